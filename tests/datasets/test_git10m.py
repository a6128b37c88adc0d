"""Git-10M reader and generator: schema, tile maths, streaming, images, errors."""

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rsretrieve.datasets.fixtures.git10m import generate_git10m
from rsretrieve.datasets.git10m import Git10M, parse_location, tile_resolution, tile_to_lonlat
from rsretrieve.errors import DataError


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return generate_git10m(tmp_path_factory.mktemp("g") / "git10m", n_rows=50, shards=3, seed=0)


def test_tile_maths_matches_the_card() -> None:
    assert tile_to_lonlat(0, 0, 0) == pytest.approx((-180.0, 85.0511287798))
    assert tile_to_lonlat(1, 1, 1) == pytest.approx((0.0, 0.0))
    lon, lat = tile_to_lonlat(17, 65536, 43582)
    assert lon == pytest.approx(0.0) and lat == pytest.approx(math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * 43582 / 2**17)))))
    assert tile_resolution(17) == 1.0 and tile_resolution(15) == 4.0 and tile_resolution(18) == 0.5


def test_parse_location_errors() -> None:
    assert parse_location("16_100_200", "x") == (16, 100, 200)
    with pytest.raises(DataError, match="row 3: Google_location '16-1-2' is not 'Z_X_Y' integers"):
        parse_location("16-1-2", "row 3")
    with pytest.raises(DataError, match="outside the tile grid of level 2"):
        parse_location("2_4_0", "row 0")


def test_streams_every_row_with_decoded_locations(shards) -> None:  # noqa: ANN001
    data = Git10M(shards)
    assert data.rows == 50 and len(data.shards) == 3
    batches = list(data.iter_captions(batch_size=7))
    assert sum(len(b.caption) for b in batches) == 50
    assert max(len(b.caption) for b in batches) <= 7
    first = batches[0]
    assert np.all((first.lon >= -180) & (first.lon <= 180)) and np.all(np.abs(first.lat) <= 86)
    assert set(first.resolution) <= {8.0, 4.0, 2.0, 1.0, 0.5}


def test_images_are_png_rgb(shards) -> None:  # noqa: ANN001
    image = Git10M(shards).read_image("git10m_00000003.png")
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    with pytest.raises(DataError, match="no image named 'nope.png'"):
        Git10M(shards).read_image("nope.png")


def test_schema_and_value_errors(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match="Git-10M data .* not found"):
        Git10M(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .parquet shards"):
        Git10M(tmp_path / "empty")
    pq.write_table(pa.table({"caption": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="bad.parquet: missing column\\(s\\) img_name"):
        Git10M(tmp_path / "bad.parquet")
    row = {"img_name": ["a"], "img_quality_score": [0.5], "caption": ["ok"], "caption_length": [1],
           "resolution": [1.0], "Google_location": ["17_x_1"]}
    pq.write_table(pa.table(row), tmp_path / "loc.parquet")
    with pytest.raises(DataError, match="loc.parquet: row 0: Google_location '17_x_1'"):
        list(Git10M(tmp_path / "loc.parquet").iter_captions(10))
    pq.write_table(pa.table({**row, "Google_location": ["17_1_1"], "caption": [" "]}), tmp_path / "cap.parquet")
    with pytest.raises(DataError, match=r"row 0 \(img_name 'a'\): field 'caption' is empty; fix the row, or pass --lenient"):
        list(Git10M(tmp_path / "cap.parquet").iter_captions(10))
