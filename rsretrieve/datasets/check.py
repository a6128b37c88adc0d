"""`rsretrieve check --data DATA`: a doctor for a CrisisLandMark-format folder.

It reads every sample once, streaming (one image in memory at a time, each shard opened
once), without embedding anything, and reports every problem it finds instead of stopping at
the first. Errors make the data unusable as it is (a key that does not resolve, a link out of
the folder, a wrong shape, a non-float image, a duplicate key, queries or qrels naming keys
that do not exist, a source whose patches are all constant); warnings are plausibility flags:

- Sentinel-1 whose VV band is on average below VH: VV backscatter is the stronger (about
  -12.6 dB against -19.4 dB on BigEarthNet S1), so the bands are probably stored VH, VV (an
  early version of the authors' loader flipped the channels of benv2s1 and sen1flood, so a
  release may store them either way);
- Sentinel-2 values outside the reflectance scale (0 to about 20,000: reflectance x 10000);
- non-finite pixels (per source), and patches without a single finite pixel;
- keys of the main file that metadata.parquet does not list; labels outside the vocabulary;
- coords impossible for their CRS: all zero, not finite, latitude beyond ±90 (EPSG:4326), a
  CRS pyproj does not know, a ``crs`` that is no whole EPSG code (32610.7) or not 2-D
  (geocentric EPSG:4978), or a centre outside the CRS's area of use (3° of slack); such a
  patch's location is unknown to geographic filters;
- coords whose neighbouring pixels are not about 10 m apart (3.3 to 30 m), and a source whose
  patches all sit at one point: degrees stored under a UTM code land a whole source at one
  plausible-looking place, inside the CRS's area of use.
"""

from __future__ import annotations

import os

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.datasets.crisislandmark import MAIN_FILE, METADATA_FILE, PATCH_SIZE, QRELS_DIR, QUERIES_FILE, _Shards
from rsretrieve.datasets.labels import CLASSES, normalise_labels, parse_labels
from rsretrieve.datasets.sensors import BANDS, SOURCES, sensor_of_key
from rsretrieve.errors import DataError
from rsretrieve.geo import CENTRE, PIXEL_M, SPACING_SLACK, LonLat, coords_problem, crs_code, epsg_crs, pixel_spacing_m

S2_MAX_PLAUSIBLE = 20_000.0
ONE_POINT_DEG = 1e-4  # about 10 m: patches of a source closer than this are one place
EXAMPLES = 5


@dataclass
class _Problems:
    """Problems by (level, code): a count, a message and a few example keys each."""

    found: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def add(self, level: str, code: str, message: str, key: str | None = None) -> None:
        entry = self.found.setdefault((level, code), {"level": level, "code": code, "message": message, "count": 0, "examples": []})
        entry["count"] += 1
        if key is not None and len(entry["examples"]) < EXAMPLES and key not in entry["examples"]:
            entry["examples"].append(key)

    def listed(self) -> list[dict[str, Any]]:
        return sorted(self.found.values(), key=lambda e: (e["level"] != "error", e["code"]))


@dataclass
class _SourceStats:
    """Running per-band sums of one source (float64), never the images themselves."""

    sensor: str
    samples: int = 0
    nonfinite_pixels: int = 0
    blank_patches: int = 0
    constant_patches: int = 0
    count: np.ndarray | None = None
    total: np.ndarray | None = None
    squares: np.ndarray | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    outside_scale: int = 0
    located: int = 0
    lon_range: tuple[float, float] = (math.inf, -math.inf)
    lat_range: tuple[float, float] = (math.inf, -math.inf)

    def place(self, lon: float, lat: float) -> None:
        """One patch centre of the source (running extent, not the list)."""
        self.located += 1
        self.lon_range = (min(self.lon_range[0], lon), max(self.lon_range[1], lon))
        self.lat_range = (min(self.lat_range[0], lat), max(self.lat_range[1], lat))

    def one_point(self) -> bool:
        """Several located patches, all within about a pixel of one point."""
        return self.located > 1 and max(self.lon_range[1] - self.lon_range[0], self.lat_range[1] - self.lat_range[0]) < ONE_POINT_DEG

    def add(self, image: np.ndarray) -> None:
        bands = image.shape[0]
        if self.count is None:
            self.count, self.total, self.squares = np.zeros(bands), np.zeros(bands), np.zeros(bands)
            self.low, self.high = np.full(bands, np.inf), np.full(bands, -np.inf)
        flat = image.reshape(bands, -1).astype(np.float64)
        finite = np.isfinite(flat)
        self.samples += 1
        self.nonfinite_pixels += int((~finite).sum())
        if not finite.any():
            self.blank_patches += 1
            return
        values = np.where(finite, flat, 0.0)
        self.count += finite.sum(axis=1)
        self.total += values.sum(axis=1)
        self.squares += (values**2).sum(axis=1)
        self.low = np.minimum(self.low, np.where(finite, flat, np.inf).min(axis=1))
        self.high = np.maximum(self.high, np.where(finite, flat, -np.inf).max(axis=1))
        kept = flat[finite]
        if kept.max() == kept.min():
            self.constant_patches += 1
        if self.sensor == "s2":
            self.outside_scale += int(((kept < 0) | (kept > S2_MAX_PLAUSIBLE)).sum())

    def bands(self) -> dict[str, dict[str, float | None]]:
        out: dict[str, dict[str, float | None]] = {}
        for i, band in enumerate(BANDS[self.sensor]):
            n = float(self.count[i]) if self.count is not None else 0.0
            mean = self.total[i] / n if n else None  # type: ignore[index]
            var = max(self.squares[i] / n - mean**2, 0.0) if n else None  # type: ignore[index,operator]
            out[band] = {"mean": _round(mean), "std": _round(math.sqrt(var) if var is not None else None),
                         "min": _round(self.low[i] if n else None), "max": _round(self.high[i] if n else None)}  # type: ignore[index]
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def check_to_file(root: Path, out: Path | None = None, on_start: Callable[[int], None] | None = None,
                  on_sample: Callable[[int], None] | None = None) -> tuple[dict[str, Any], Path]:
    """What ``rsretrieve check`` runs: the report of the folder at ``root``, written as JSON to
    ``out`` (default NAME.check.json beside the dataset folder NAME, not in whatever folder the
    command ran from; checked before reading)."""
    from rsretrieve.io import check_writable, write_json

    folder = Path(os.path.abspath(root))
    target = Path(out) if out is not None else folder.parent / f"{folder.name}.check.json"
    check_writable(target)
    report = check_dataset(root, on_start, on_sample)
    write_json(target, report)
    return report, target


def check_dataset(root: Path, on_start: Callable[[int], None] | None = None,
                  on_sample: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Read the whole folder and return the report (``problems``: errors and warnings)."""
    root = Path(root)
    problems = _Problems()
    for required in (root / MAIN_FILE, root / METADATA_FILE):
        if not required.is_file():
            raise DataError(f"{required} not found: not a CrisisLandMark folder")
    rows = _metadata(root / METADATA_FILE, problems)
    keys = list(dict.fromkeys(key for key, _, _ in rows))
    split_of = {key: split for key, split, _ in rows}
    in_main = _main_keys(root / MAIN_FILE)
    for key in sorted(set(keys) - in_main):
        problems.add("error", "missing-key", f"listed in {METADATA_FILE} but not in {MAIN_FILE}", key)
    for key in sorted(in_main - set(keys)):
        problems.add("warning", "unlisted-key", f"in {MAIN_FILE} but not listed in {METADATA_FILE} (never indexed)", key)
    stats: dict[str, _SourceStats] = {}
    readable = [k for k in keys if k in in_main]
    if on_start:
        on_start(len(readable))
    labels_of = {key: raw for key, _, raw in rows}
    with _Shards(root, root / MAIN_FILE) as shards:
        for key in readable:
            _check_sample(shards, key, labels_of[key], stats, problems)
            if on_sample:
                on_sample(1)
    _flag_sources(stats, problems)
    labels = Counter(label for _, _, raw in rows for label in normalise_labels(raw))
    for label in sorted(set(labels) - set(CLASSES)):
        problems.add("warning", "unknown-label", "label outside the Dynamic World + crisis vocabulary after mapping", label)
    topics = _check_topics(root, set(keys), split_of, problems)
    listed = problems.listed()
    return {
        "dataset": str(root.resolve()),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ok": not any(p["level"] == "error" for p in listed),
        "counts": {
            "metadata_rows": len(rows), "keys": len(keys), "main_file_keys": len(in_main), "read": sum(s.samples for s in stats.values()),
            "splits": dict(Counter(split or "invalid" for _, split, _ in rows)),
        },
        "labels": dict(sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))),
        "sources": {name: {"sensor": s.sensor, "samples": s.samples, "nonfinite_pixels": s.nonfinite_pixels,
                           "blank_patches": s.blank_patches, "constant_patches": s.constant_patches, "bands": s.bands()}
                    for name, s in sorted(stats.items())},
        "topics": topics,
        "problems": listed,
    }


def _metadata(path: Path, problems: _Problems) -> list[tuple[str, str, list[str]]]:
    """Rows (key, split, labels); bad rows become problems, not a stop."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad files
        raise DataError(f"{path}: cannot read parquet: {exc}") from None
    missing = [c for c in ("key", "split", "labels") if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    rows, seen = [], Counter()
    for key, split, labels in zip(*(table.column(c).to_pylist() for c in ("key", "split", "labels"))):
        if not isinstance(key, str) or not key:
            problems.add("error", "bad-key", "a metadata row has no key")
            continue
        seen[key] += 1
        if seen[key] == 2:
            problems.add("error", "duplicate-key", f"key listed more than once in {METADATA_FILE}", key)
        if split not in ("train", "test", "corpus"):
            # still listed: its image and judgements are checked, but not blamed on the split again
            problems.add("error", "bad-split", f"split is not train or test ({split!r})", key)
            split = None
        parsed, joined = parse_labels(labels)
        if parsed is None:
            problems.add("error", "bad-labels", "labels are not a list of strings", key)
        elif joined:
            problems.add("warning", "joined-labels", f"labels stored as one string, read as {len(parsed)} labels", key)
        labels = parsed or []
        rows.append((key, "test" if split == "corpus" else split, labels))  # split None: reported above
    return rows


def _main_keys(path: Path) -> set[str]:
    import h5py

    try:
        with h5py.File(path, "r") as main:
            return set(main.keys())
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot open as HDF5: {exc}") from None


def _source_of(key: str) -> str | None:
    lowered = key.lower()
    found = [s for s in SOURCES if s in lowered]
    return found[0] if len(found) == 1 else None


def _check_sample(shards: _Shards, key: str, listed: list[str], stats: dict[str, _SourceStats],
                  problems: _Problems) -> None:
    try:
        sensor = sensor_of_key(key)
    except DataError:
        problems.add("error", "no-source", "the key names no known source (or sources of both sensors)", key)
        return
    source = _source_of(key) or sensor
    try:
        group = shards.group(key)
        dataset = shards.member(group, "image", key)
    except DataError as exc:
        code = "outside-folder" if "outside the dataset folder" in str(exc) else "unresolvable"
        problems.add("error", code, str(exc).split(": ", 1)[-1] if code == "unresolvable" else "a link leads outside the dataset folder", key)
        return
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        problems.add("error", "damaged", f"damaged HDF5 data ({str(exc).splitlines()[0][:80]})", key)
        return
    expected = (len(BANDS[sensor]), PATCH_SIZE, PATCH_SIZE)
    if getattr(dataset, "shape", None) != expected:
        problems.add("error", "shape", f"image shape is not {expected} for {sensor}", key)
        return
    if dataset.dtype.kind != "f":
        problems.add("error", "dtype", "image is not float (CrisisLandMark stores float32)", key)
        return
    if dataset.dtype != np.float32:
        loss = "loses precision (3 significant digits)" if dataset.dtype.itemsize < 4 else "is read as float32"
        problems.add("warning", "dtype", f"image stored as {dataset.dtype}, not float32: it {loss}", key)
    centre = None
    if group.get("coords", getlink=True) is None:
        problems.add("warning", "no-coords", "no 'coords' dataset: the patch's location is unknown", key)
    else:
        centre = _check_coords(shards, group, key, problems)
    _check_label_attribute(group, listed, key, problems)
    try:
        image = np.asarray(dataset[()], dtype=np.float32)
    except (OSError, RuntimeError, ValueError) as exc:
        problems.add("error", "damaged", f"cannot read the image ({str(exc).splitlines()[0][:80]})", key)
        return
    entry = stats.setdefault(source, _SourceStats(sensor))
    if centre is not None:
        entry.place(*centre)
    blank_before = entry.blank_patches
    entry.add(image)
    if entry.blank_patches > blank_before:
        problems.add("warning", "blank-patch", "no finite pixel at all", key)


_LONLAT = LonLat()


def _check_coords(shards: _Shards, group: Any, key: str, problems: _Problems) -> tuple[float, float] | None:
    """Coords that cannot be a place on Earth in the sample's CRS, or whose pixels are not
    about 10 m apart; the centre's lon/lat when it has one (for the per-source checks)."""
    try:
        coords = np.asarray(shards.member(group, "coords", key)[()], np.float64)
    except (DataError, OSError, RuntimeError, ValueError, TypeError) as exc:
        problems.add("warning", "coords-damaged", f"cannot read 'coords' ({str(exc).splitlines()[0][:80]})", key)
        return None
    if coords.shape != (2, PATCH_SIZE, PATCH_SIZE):
        problems.add("warning", "coords-shape", f"'coords' shape is not (2, {PATCH_SIZE}, {PATCH_SIZE}): location unknown", key)
        return None
    if not np.any(coords):
        problems.add("warning", "coords-zero", "'coords' are all zero: location unknown", key)
        return None
    stored = group.attrs.get("crs")
    x, y = float(coords[0, CENTRE, CENTRE]), float(coords[1, CENTRE, CENTRE])
    problem = coords_problem(x, y, stored, _LONLAT)
    if problem is not None:
        problems.add("warning", problem[0], problem[1], key)
        return None
    code, _ = crs_code(stored)
    crs = epsg_crs(code)  # known and 2-D: coords_problem said so
    spacing = pixel_spacing_m(coords, crs)
    if spacing is not None and not PIXEL_M / SPACING_SLACK <= spacing <= PIXEL_M * SPACING_SLACK:
        unit = "degrees" if crs.is_geographic else crs.axis_info[0].unit_name
        problems.add("warning", "coords-spacing",
                     f"neighbouring pixels are {spacing:.3g} m apart in EPSG:{code} ({unit}), not about {PIXEL_M:g} m: "
                     "coords in other units than the CRS's (degrees under a UTM code?)", key)
    lon, lat = _LONLAT.convert(np.array([x]), np.array([y]), np.array([float(code)]))
    return float(lon[0]), float(lat[0])


def _check_label_attribute(group: Any, listed: list[str], key: str, problems: _Problems) -> None:
    """The sample's ``labels`` attribute, where present, names what metadata.parquet does."""
    stored = group.attrs.get("labels")
    if stored is None:
        return
    values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in np.atleast_1d(stored).tolist()]
    parsed, _ = parse_labels(values[0] if len(values) == 1 else values)
    if set(normalise_labels(parsed or [])) != set(normalise_labels(listed)):
        problems.add("warning", "labels-mismatch", f"the 'labels' attribute ({', '.join(values)}) disagrees with "
                     f"{METADATA_FILE} ({', '.join(listed)})", key)


def _flag_sources(stats: dict[str, _SourceStats], problems: _Problems) -> None:
    for name, s in sorted(stats.items()):
        bands = s.bands()
        if s.nonfinite_pixels:
            problems.add("warning", "nonfinite", f"{s.nonfinite_pixels} NaN/inf pixels (replaced when indexing, or refused with --strict)", name)
        if s.samples and s.constant_patches + s.blank_patches == s.samples:
            problems.add("error", "constant-source", "every patch of this source is constant: no image content", name)
        if s.sensor == "s1" and bands["VV"]["mean"] is not None and bands["VV"]["mean"] < bands["VH"]["mean"]:
            problems.add("warning", "s1-band-order",
                         f"mean VV {bands['VV']['mean']:.2f} below mean VH {bands['VH']['mean']:.2f}: bands stored VH, VV?", name)
        if s.one_point():
            problems.add("warning", "coords-one-point",
                         f"all {s.located} located patches sit at one point (lon {s.lon_range[0]:.5f}, lat {s.lat_range[0]:.5f}): "
                         "coords stored in other units than the CRS's, or copied from one patch?", name)
        if s.sensor == "s2" and s.outside_scale:
            problems.add("warning", "s2-scale",
                         f"{s.outside_scale} values outside 0..{S2_MAX_PLAUSIBLE:.0f} (reflectance x 10000 expected)", name)


def _check_topics(root: Path, keys: set[str], split_of: dict[str, str], problems: _Problems) -> dict[str, Any]:
    from rsretrieve.datasets.queries import load_qrels, load_queries

    out: dict[str, Any] = {}
    try:
        queries = load_queries(root / QUERIES_FILE)
        out["queries"] = len(queries)
    except DataError as exc:
        problems.add("error", "queries", str(exc))
        queries = None
    try:
        qrels = load_qrels(root / QRELS_DIR)
    except DataError as exc:
        problems.add("error", "qrels", str(exc))
        return out
    out["judged_queries"] = len(qrels)
    out["judgements"] = sum(len(d) for d in qrels.values())
    if queries is not None:
        for qid in sorted(set(qrels) - set(queries)):
            problems.add("error", "qrels-unknown-query", f"qrels judge a query missing from {QUERIES_FILE}", qid)
    for qid, docs in qrels.items():
        for doc in docs:
            if doc not in keys:
                problems.add("error", "qrels-unknown-key", f"qrels judge a key missing from {METADATA_FILE}", doc)
            elif split_of.get(doc) not in ("test", None):  # None: its bad split is the one error to show
                problems.add("warning", "qrels-train-key", "qrels judge a train-split key (not in the retrieval corpus)", doc)
    return out
