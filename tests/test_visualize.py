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
