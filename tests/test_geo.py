"""Patch locations and geographic filters: lon/lat stored at index time (checked against pyproj
called here on the raw coords), null and counted when unknown, exact filters on every index
kind, region evaluation, the doctor's coordinate checks and the map under `show`."""

import json
import shutil

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
from pyproj import Transformer
from typer.testing import CliRunner

from rsretrieve.cli.app import app
from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.embeddings import build_pipeline
from rsretrieve.encoders import EncoderSpec
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.evaluate import evaluate_index, restrict
from rsretrieve.geo import GeoFilter, LonLat, haversine_km
from rsretrieve.index import IndexSettings, build_index, load_index
from rsretrieve.search import search_vectors
from tests.conftest import first_key

RANDOM = EncoderSpec(backend="random", model="random")
BOX = (0.0, 45.0, 12.0, 55.0)


@pytest.fixture(scope="module")
def random_index(sample_root, tmp_path_factory):  # noqa: ANN001, ANN201
    out = tmp_path_factory.mktemp("geo") / "idx"
    build_index(CrisisLandMark(sample_root), build_pipeline(RANDOM), out, batch_size=8)
    return out


def _docs(run, qid):  # noqa: ANN001, ANN202
    return [doc for doc, _ in run.ranked(qid)]


def raw_centres(root, keys):  # noqa: ANN001, ANN201
    """lon/lat of each key from the HDF5 file, converted here with pyproj directly."""
    out = []
    with h5py.File(root / "crisislandmark.h5", "r") as main:
        for key in keys:
            group = main[key]
            x, y = group["coords"][:, 60, 60]
            transformer = Transformer.from_crs(int(group.attrs["crs"]), 4326, always_xy=True)
            out.append(transformer.transform(float(x), float(y)))
    return np.array(out)


def test_index_stores_each_centre_as_lon_lat(random_index, sample_root) -> None:  # noqa: ANN001
    index = load_index(random_index)
    np.testing.assert_allclose(index.locations, raw_centres(sample_root, index.keys), atol=1e-9)
    assert json.loads((random_index / "manifest.json").read_text())["locations"] == {"known": len(index.keys), "unknown": 0}


def test_unknown_locations_are_null_and_counted(sample_copy, tmp_path) -> None:  # noqa: ANN001
    keys = [first_key(sample_copy, p) for p in ("benv2s2", "cabuar", "benv2s1")]
    with h5py.File(sample_copy / "crisislandmark.h5", "a") as main:
        del main[keys[0]]["coords"]
        del main[keys[1]].attrs["crs"]
        main[keys[2]]["coords"][...] = np.nan
    out = tmp_path / "idx"
    manifest = build_index(CrisisLandMark(sample_copy), build_pipeline(RANDOM), out, batch_size=8, readers=2)
    ids = pq.read_table(out / "ids.parquet").to_pylist()
    nulls = {row["key"] for row in ids if row["lon"] is None and row["lat"] is None}
    assert set(keys) <= nulls and manifest["locations"]["unknown"] == len(nulls) >= 3
    index = load_index(out)
    run = search_vectors(index, ["q"], np.ones((1, 64), np.float32), 1000, where=GeoFilter(bbox=(-180, -90, 180, 90)))
    assert not set(_docs(run, "q")) & nulls  # an unknown place passes no filter


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_filters_are_exact_on_every_index_kind(random_index, tmp_path, kind: str) -> None:  # noqa: ANN001
    folder = random_index
    if kind != "flat":
        folder = tmp_path / kind
        shutil.copytree(random_index, folder)
        from rsretrieve.index import build_faiss, read_manifest

        settings = IndexSettings(kind=kind, nlist=4, nprobe=1, hnsw_m=4, ef_search=1)
        embeddings = np.load(folder / "embeddings.npy")
        import faiss

        faiss.write_index(build_faiss(embeddings, settings), str(folder / "index.faiss"))
        manifest = read_manifest(folder)
        manifest["index"] = {**manifest["index"], **settings.__dict__}
        manifest["files"]["index.faiss"] = {"bytes": (folder / "index.faiss").stat().st_size}  # as a build records it
        (folder / "manifest.json").write_text(json.dumps(manifest))
    index = load_index(folder)
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((5, index.embeddings.shape[1])).astype(np.float32)
    for where in (GeoFilter(bbox=BOX), GeoFilter(near=(20.0, 50.0), radius_km=600.0),
                  GeoFilter(bbox=(25.0, 40.0, -2.0, 60.0))):  # across the antimeridian: all but 25..-2 E
        inside = np.flatnonzero(where.mask(index.locations[:, 0], index.locations[:, 1]))
        assert 0 < inside.size < len(index.keys)
        run = search_vectors(index, [str(i) for i in range(5)], queries, 1000, where=where)
        exact = queries @ np.asarray(index.embeddings).T
        for i in range(5):
            expected = [index.keys[j] for j in inside[np.argsort(-exact[i, inside], kind="stable")]]
            assert _docs(run, str(i)) == expected  # every passing row, in brute-force order


def test_box_and_circle_semantics() -> None:
    lon = np.array([175.0, -175.0, 0.0, 12.4964, 2.3522])
    lat = np.array([0.0, 0.0, 0.0, 41.9028, 48.8566])
    assert GeoFilter(bbox=(170.0, -10.0, -170.0, 10.0)).mask(lon, lat).tolist() == [True, True, False, False, False]
    assert haversine_km(lon[3:4], lat[3:4], 2.3522, 48.8566)[0] == pytest.approx(1105.8, abs=1.0)  # Rome - Paris
    assert GeoFilter(near=(2.3522, 48.8566), radius_km=1110).mask(lon, lat).tolist() == [False, False, False, True, True]
    for bad, message in (({"bbox": "1,2,3"}, "must be four numbers"), ({"near": "1,2"}, "go together"),
                         ({"near": "1,95", "radius_km": 5}, "is not lon,lat"), ({"near": "1,2", "radius_km": -1}, "above 0"),
                         ({"bbox": "0,10,5,1"}, "lat_min below lat_max")):
        with pytest.raises(ConfigError, match=message):
            GeoFilter.parse(**bad)
    lon_out, lat_out = LonLat().convert(np.array([0.0, 500000.0]), np.array([0.0, 5e6]), np.array([32632.0, 999999.0]))
    assert np.isnan(lon_out).all() and np.isnan(lat_out).all()  # (0, 0) fill and an unknown EPSG code


def test_region_evaluation_scores_only_its_documents(random_index, sample_root) -> None:  # noqa: ANN001
    where = GeoFilter(bbox=BOX)
    evaluation = evaluate_index(random_index, metrics=["ndcg@10", "recall@100"], where=where)
    index = load_index(random_index)
    inside = {k for k, ok in zip(index.keys, where.mask(index.locations[:, 0], index.locations[:, 1])) if ok}
    assert set(evaluation.corpus.sensor_of) == inside
    assert evaluation.report["source"]["region"] == {"bbox": list(BOX), "documents": len(inside)}
    from rsretrieve.datasets.queries import load_qrels

    qrels = load_qrels(sample_root / "qrels")
    region_qrels, _ = restrict(qrels, inside)
    import pytrec_eval  # the reference itself: queries with a relevant document in the region, averaged

    judged = {q: docs for q, docs in region_qrels.items() if any(r > 0 for r in docs.values())}
    run = {q: dict(evaluation.runs["all"].ranked(q)) for q in judged}
    measured = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.10", "recall.100"}).evaluate(run)
    expected = {"ndcg@10": np.mean([m["ndcg_cut_10"] for m in measured.values()]),
                "recall@100": np.mean([m["recall_100"] for m in measured.values()])}
    assert evaluation.report["results"]["all"]["scores"] == pytest.approx(expected, abs=1e-12)
    assert all(set(_docs(evaluation.runs[name], q)) <= inside for name in evaluation.runs for q in evaluation.runs[name].qids)
    with pytest.raises(DataError, match="no document of index"):
        evaluate_index(random_index, metrics=["ndcg@10"], where=GeoFilter(bbox=(100.0, -10.0, 110.0, 0.0)))


def test_cli_geographic_options(random_index, sample_root, tmp_path) -> None:  # noqa: ANN001
    runner = CliRunner()
    hits = tmp_path / "box.trec"
    result = runner.invoke(app, ["search", "--index", str(random_index), "--text", "water", "--bbox", "0,45,12,55",
                                 "--out", str(hits)])
    assert result.exit_code == 0, result.output
    index = load_index(random_index)
    inside = GeoFilter(bbox=BOX).mask(index.locations[:, 0], index.locations[:, 1])
    assert len(hits.read_text().splitlines()) == int(inside.sum())  # the box's patches, not the whole corpus
    refused = runner.invoke(app, ["search", "--index", str(random_index), "--text", "x", "--min-quality", "0.5"])
    assert refused.exit_code == 2 and "--min-quality applies to caption indexes" in refused.stderr
    empty = runner.invoke(app, ["search", "--index", str(random_index), "--text", "x", "--near", "150,-30", "--radius-km", "10"])
    assert empty.exit_code == 2 and "passes --near 150,-30 --radius-km 10: nothing to rank" in empty.stderr
    assert "loading encoder" not in empty.stderr  # the filters alone decided it
    swapped = runner.invoke(app, ["search", "--index", str(random_index), "--text", "x", "--bbox", "45,0,55,12"])
    assert swapped.exit_code == 2
    assert "read as lat,lon, --bbox 0,45,12,55 would hold" in swapped.stderr and "longitude first" in swapped.stderr
    result = runner.invoke(app, ["eval", "--index", str(random_index), "--bbox", "0,45,12,55", "-m", "ndcg@10",
                                 "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["source"]["region"]["documents"] == int(inside.sum())
    saved = runner.invoke(app, ["eval", "--run", str(hits), "--qrels", str(sample_root / "qrels"),
                                "--queries", str(sample_root / "queries.jsonl"), "--near", "1,2", "--radius-km", "3"])
    assert saved.exit_code == 2 and "--near cannot be used with --run" in saved.stderr
    shown = runner.invoke(app, ["show", "--index", str(random_index), "--text", "water", "-k", "4", "--out", str(tmp_path / "s.png")])
    assert shown.exit_code == 0, shown.output
    from PIL import Image

    assert Image.open(tmp_path / "s.png").height > 400  # the grid (one row, about 220 px) and the map below it


def test_check_flags_impossible_coords(sample_copy) -> None:  # noqa: ANN001
    from rsretrieve.datasets.check import check_dataset

    keys = [first_key(sample_copy, p) for p in ("benv2s2", "cabuar", "benv2s1", "mmflood")]
    with h5py.File(sample_copy / "crisislandmark.h5", "a") as main:
        main[keys[0]]["coords"][...] = 0
        main[keys[1]].attrs["crs"] = np.float32(4326)  # projected metres read as degrees: latitude far beyond 90
        main[keys[2]]["coords"][0] += 5e6  # 5000 km east of its UTM zone
        main[keys[3]].attrs["crs"] = np.float32(1)
    report = check_dataset(sample_copy)
    flagged = {p["code"]: p for p in report["problems"] if p["code"].startswith("coords")}
    assert flagged["coords-zero"]["examples"] == [keys[0]]
    assert "beyond ±90° latitude" in flagged["coords-range"]["message"] and flagged["coords-range"]["examples"] == [keys[1]]
    assert flagged["coords-area"]["examples"] == [keys[2]] and "outside the CRS's area of use" in flagged["coords-area"]["message"]
    assert flagged["coords-crs"]["examples"] == [keys[3]] and "not an EPSG code" in flagged["coords-crs"]["message"]
    assert len(flagged) == 4


def test_coords_and_crs_as_datasets_store_them(sample_copy, tmp_path) -> None:  # noqa: ANN001
    """Integer coords and a crs stored as text are read; a crs that is no whole code or not
    2-D locates nothing and check says why; degrees under a UTM code are flagged twice."""
    from rsretrieve.datasets.check import check_dataset

    keys = [first_key(sample_copy, p) for p in ("benv2s2", "cabuar", "benv2s1", "mmflood")]
    expected = raw_centres(sample_copy, keys[:2])
    degrees_source = _source_keys(sample_copy, "quakeset")
    with h5py.File(sample_copy / "crisislandmark.h5", "a") as main:
        coords = np.rint(main[keys[0]]["coords"][()]).astype(np.int32)
        del main[keys[0]]["coords"]
        main[keys[0]]["coords"] = coords  # whole metres, as integers
        code = int(main[keys[1]].attrs["crs"])
        main[keys[1]].attrs["crs"] = f"EPSG:{code}"
        main[keys[2]].attrs["crs"] = np.float32(32610.7)
        main[keys[3]].attrs["crs"] = np.float32(4978)  # geocentric
        for key in degrees_source:  # degrees written under a UTM code
            main[key].attrs["crs"] = np.float32(32631)
            lon, lat = np.meshgrid(4.5 + np.arange(120) * 1e-4, 52.3 - np.arange(120) * 1e-4)
            main[key]["coords"][...] = np.stack([lon, lat]).astype(np.float32)
    out = tmp_path / "idx"
    build_index(CrisisLandMark(sample_copy), build_pipeline(RANDOM), out, batch_size=8)
    index = load_index(out)
    row = {k: i for i, k in enumerate(index.keys)}
    np.testing.assert_allclose(index.locations[[row[keys[0]], row[keys[1]]]], expected, atol=1e-4)  # integers round to 1 m
    assert np.isnan(index.locations[row[keys[2]]]).all() and np.isnan(index.locations[row[keys[3]]]).all()

    report = check_dataset(sample_copy)
    flagged = {p["code"]: p for p in report["problems"] if p["code"].startswith("coords")}
    assert flagged["coords-crs"]["examples"] == [keys[2]] and "32610.7 is not a whole positive EPSG code" in flagged["coords-crs"]["message"]
    assert flagged["coords-crs-not-2d"]["examples"] == [keys[3]] and "EPSG:4978 is geocentric" in flagged["coords-crs-not-2d"]["message"]
    assert flagged["coords-spacing"]["count"] == len(degrees_source) and "not about 10 m" in flagged["coords-spacing"]["message"]
    assert flagged["coords-one-point"]["examples"] == ["quakeset"]
    assert keys[0] not in str(flagged) and keys[1] not in str(flagged)


def _source_keys(root, source: str) -> list[str]:  # noqa: ANN001
    with h5py.File(root / "crisislandmark.h5", "r") as main:
        return [k for k in main if k.startswith(source)]
