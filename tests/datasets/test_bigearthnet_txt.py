"""BigEarthNet.txt: task building, LMDB and GeoTIFF patches, errors, grouped metrics."""

import shutil

import lmdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rsretrieve.datasets.bigearthnet_txt import BigEarthNetTask, build_task, presence_class
from rsretrieve.datasets.fixtures.bigearthnet_txt import generate_bigearthnet_txt
from rsretrieve.datasets.queries import load_qrels, load_queries, load_query_fields
from rsretrieve.datasets.sensors import S2_BANDS, sensor_of_key
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.evaluate import group_scores


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return generate_bigearthnet_txt(tmp_path_factory.mktemp("ben") / "ben", n_patches=30, seed=0)


@pytest.fixture(scope="module")
def tasks(fixture, tmp_path_factory):  # noqa: ANN001, ANN201
    root = tmp_path_factory.mktemp("tasks")
    for fmt in ("lmdb", "geotiff"):
        build_task(fixture / "BigEarthNet.txt.parquet", fixture / fmt, fmt, root / fmt)
    return root


def test_presence_question_parsing() -> None:
    assert presence_class("Is there any coniferous forest in the image?") == "Coniferous forest"
    assert presence_class("Are moors, heathland and sclerophyllous vegetation present?") == "Moors, heathland and sclerophyllous vegetation"
    assert presence_class("Is there any lava?") is None


def test_task_queries_and_qrels(fixture, tasks) -> None:  # noqa: ANN001
    table = pq.read_table(fixture / "BigEarthNet.txt.parquet").to_pylist()
    bench = [r for r in table if r["split"] == "bench"]
    queries = load_queries(tasks / "lmdb" / "queries.jsonl")
    qrels = load_qrels(tasks / "lmdb" / "qrels")
    captions = [r for r in bench if r["type"] == "captioning"]
    assert {f"cap-{r['ID']}" for r in captions} <= set(queries)
    for row in captions:
        assert qrels[f"cap-{row['ID']}"] == {row["patch_id"]: 1, row["s1_name"]: 1}
        assert queries[f"cap-{row['ID']}"] == row["output"]
    yes = {(presence_class(r["input"]), r["patch_id"]) for r in bench if r["category"] == "Pr" and r["output"] == "Yes"}
    for cls, patch in yes:
        qid = next(q for q, text in queries.items() if text == cls)
        assert patch in qrels[qid]
    fields = load_query_fields(tasks / "lmdb" / "queries.jsonl", ["country", "season", "climate_zone"])
    assert all(fields[f"cap-{r['ID']}"]["country"] == r["country"] for r in captions)
    corpus = pq.read_table(tasks / "lmdb" / "patches.parquet")
    assert set(corpus.column("patch_id").to_pylist()) == {r["patch_id"] for r in bench}


def test_lmdb_and_geotiff_give_the_same_pixels(tasks) -> None:  # noqa: ANN001
    images = {}
    for fmt in ("lmdb", "geotiff"):
        ds = BigEarthNetTask(tasks / fmt)
        images[fmt] = {k: img for b in ds.iter_batches(ds.plan_batches(8)) for k, img in zip(b.keys, b.images)}
    assert images["lmdb"].keys() == images["geotiff"].keys()
    for key, image in images["lmdb"].items():
        np.testing.assert_array_equal(image, images["geotiff"][key])
        assert image.shape == ((12 if sensor_of_key(key) == "s2" else 2), 120, 120)
    s2 = next(img for k, img in images["lmdb"].items() if sensor_of_key(k) == "s2")
    b01 = s2[S2_BANDS.index("B01")]
    assert np.all(b01[:6, :6] == b01[0, 0])  # a 60 m band repeated onto the 10 m grid


def test_sensor_from_product_names() -> None:
    assert sensor_of_key("S2B_MSIL2A_20180204T094159_N9999_R036_T35VNH_01_02") == "s2"
    assert sensor_of_key("S1A_IW_GRDH_1SDV_20170613T165043_33UUP_61_39") == "s1"


def test_task_and_image_errors(fixture, tasks, tmp_path) -> None:  # noqa: ANN001
    parquet = fixture / "BigEarthNet.txt.parquet"
    with pytest.raises(ConfigError, match="unknown split\\(s\\) val"):
        build_task(parquet, fixture / "lmdb", "lmdb", tmp_path / "x", splits=("val",))
    with pytest.raises(ConfigError, match="--image-format must be one of lmdb, geotiff"):
        build_task(parquet, fixture / "lmdb", "zarr", tmp_path / "x")
    pq.write_table(pa.table({"ID": [1]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="bad.parquet: missing column\\(s\\) s1_name"):
        build_task(tmp_path / "bad.parquet", fixture / "lmdb", "lmdb", tmp_path / "x")
    with pytest.raises(DataError, match="not a BigEarthNet task folder"):
        BigEarthNetTask(tmp_path)
    broken = tmp_path / "broken"
    (tmp_path / "empty-tiffs").mkdir()
    with pytest.raises(DataError, match="no folder for patch 'S2A_.*or --image-format lmdb"):
        build_task(parquet, tmp_path / "empty-tiffs", "geotiff", broken)
    assert not broken.exists()
    # a store damaged after the task was built is named when its patches are read
    tiffs = shutil.copytree(fixture / "geotiff", tmp_path / "tiffs")
    build_task(parquet, tiffs, "geotiff", broken)
    ds = BigEarthNetTask(broken)
    key = ds.samples[0].key
    band = next(tiffs.rglob(f"{key}_B01.tif"))
    band.unlink()
    with pytest.raises(DataError, match=f"{key}_B01.tif not found \\(band B01 of patch '{key}'\\)"):
        next(ds.iter_batches(ds.plan_batches(4)))
    shutil.rmtree(band.parent)
    with pytest.raises(DataError, match=f"no folder for patch '{key}'"):
        next(ds.iter_batches(ds.plan_batches(4)))


def test_a_store_of_the_other_layout_fails_when_the_task_is_built(fixture, tmp_path) -> None:  # noqa: ANN001
    parquet = fixture / "BigEarthNet.txt.parquet"
    with pytest.raises(DataError, match="geotiff is not an LMDB \\(no data.mdb\\); for folders of GeoTIFF patches pass --image-format geotiff"):
        build_task(parquet, fixture / "geotiff", "lmdb", tmp_path / "a")
    with pytest.raises(DataError, match="not in the LMDB \\(is .* an lmdb store of these patches\\? or --image-format geotiff\\)"):
        env = lmdb.open(str(tmp_path / "other-lmdb"), map_size=1 << 20)  # an LMDB of other patches
        with env.begin(write=True) as txn:
            txn.put(b"S2A_some_other_patch", b"x")
        env.close()
        build_task(parquet, tmp_path / "other-lmdb", "lmdb", tmp_path / "b")
    with pytest.raises(DataError, match="data.mdb is not a folder of GeoTIFF patch folders; for an LMDB pass --image-format lmdb"):
        build_task(parquet, fixture / "lmdb" / "data.mdb", "geotiff", tmp_path / "c")
    assert not any((tmp_path / n).exists() for n in ("a", "b", "c"))


def test_group_scores_by_query_fields() -> None:
    per_query = {"ndcg@10": {"a": 1.0, "b": 0.0, "c": 0.5, "d": 0.2}}
    fields = {"a": {"country": "X"}, "b": {"country": "X"}, "c": {"country": "Y"}, "d": {"country": None}}
    groups = group_scores(per_query, fields, ["country"])
    assert groups == {"country": {"X": {"n_queries": 2, "scores": {"ndcg@10": 0.5}},
                                  "Y": {"n_queries": 1, "scores": {"ndcg@10": 0.5}}}}
