"""The generator: deterministic, in the published layout, and with meaningful pixels."""

import json

import h5py
import numpy as np
import pytest

from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.datasets.queries import load_qrels, load_queries
from rsretrieve.datasets.fixtures.crisislandmark import generate_sample
from rsretrieve.datasets.sensors import S2_BANDS
from rsretrieve.errors import ConfigError, DataError


def test_layout_matches_the_release(sample_root) -> None:  # noqa: ANN001
    with h5py.File(sample_root / "crisislandmark.h5", "r") as main:
        keys = list(main)
        link = main.get(keys[0], getlink=True)
        assert isinstance(link, h5py.ExternalLink)
        group = main[keys[0]]
        assert group["image"].dtype == np.float32
        assert group["coords"].shape == (2, 120, 120)
        assert {"crs", "timestamp", "labels"} <= set(group.attrs)
    shards = {p.name for p in sample_root.glob("*.h5")} - {"crisislandmark.h5"}
    assert {"cabuar.h5", "mmflood.h5", "quakeset.h5", "sen12flood.h5"} <= shards
    assert any(name.startswith("benv2s2_part") for name in shards)
    assert (sample_root / "queries.jsonl").is_file() and (sample_root / "qrels" / "test.tsv").is_file()


def test_same_seed_same_dataset(tmp_path, sample_root) -> None:  # noqa: ANN001
    again = generate_sample(tmp_path / "again", n_samples=40, seed=0)
    for name in ("crisislandmark.h5", "metadata.parquet", "queries.jsonl", "qrels/test.tsv"):
        assert (again / name).read_bytes() == (sample_root / name).read_bytes()
    assert CrisisLandMark(again).content_digest() == CrisisLandMark(sample_root).content_digest()
    other = generate_sample(tmp_path / "other", n_samples=40, seed=1)
    assert CrisisLandMark(other).content_digest() != CrisisLandMark(sample_root).content_digest()


def test_pixels_follow_class_signatures(sample_root) -> None:  # noqa: ANN001
    ds = CrisisLandMark(sample_root, sensors=("s2",))
    nir, red = S2_BANDS.index("B08"), S2_BANDS.index("B04")
    ndvi: dict[str, list[float]] = {}
    for batch in ds.iter_batches(ds.plan_batches(16)):
        for key, image in zip(batch.keys, batch.images):
            dominant = next(s for s in ds.samples if s.key == key).labels[0]
            value = (image[nir] - image[red]) / (image[nir] + image[red] + 1e-6)
            ndvi.setdefault(dominant, []).append(float(np.median(value)))
    means = {c: np.mean(v) for c, v in ndvi.items()}
    vegetated = [means[c] for c in ("trees", "crops", "grass") if c in means]
    barren = [means[c] for c in ("water", "built", "bare", "burned area", "flooded area") if c in means]
    assert vegetated and barren and min(vegetated) > max(barren)


def test_qrels_follow_labels(sample_root) -> None:  # noqa: ANN001
    queries = load_queries(sample_root / "queries.jsonl")
    qrels = load_qrels(sample_root / "qrels")
    labels = {s.key: s.labels for s in CrisisLandMark(sample_root).samples}
    assert set(qrels) <= set(queries)
    for qid, docs in qrels.items():
        cls = queries[qid].removeprefix("satellite image of ")
        for doc, rel in docs.items():
            assert cls in labels[doc]
            assert rel == (2 if labels[doc][0] == cls else 1)
    # every test sample with a label is judged for it
    judged = {(q, d) for q, docs in qrels.items() for d in docs}
    assert len(judged) == sum(len(v) for v in labels.values())


def test_generator_refuses_to_clobber_and_bad_options(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "x").mkdir()
    with pytest.raises(DataError, match="already exists"):
        generate_sample(tmp_path / "x", n_samples=10)
    with pytest.raises(ConfigError, match="compression 'brotli'"):
        generate_sample(tmp_path / "y", n_samples=10, compression="brotli")
    assert not (tmp_path / "y").exists()


@pytest.mark.parametrize("compression", ["lz4", "zstd", "blosc", "gzip"])
def test_compressed_shards_read_through_hdf5plugin(tmp_path, compression) -> None:  # noqa: ANN001
    root = generate_sample(tmp_path / compression, n_samples=10, compression=compression)
    plain = generate_sample(tmp_path / "plain", n_samples=10)
    a, b = CrisisLandMark(root), CrisisLandMark(plain)
    key = a.samples[0].key
    np.testing.assert_array_equal(a.read_sample(key).image, b.read_sample(key).image)
    assert json.loads((root / "SAMPLE.json").read_text())["compression"] == compression


def test_sample_force_on_an_unchanged_seed_keeps_indexes_reusable(tmp_path) -> None:  # noqa: ANN001
    """The regenerated files are the same bytes, so they keep their times: the dataset's
    fingerprint, and so the index built on it, stay valid; another seed is another dataset."""
    import time

    from tests.cli.test_cli import invoke

    data, index = tmp_path / "clm", tmp_path / "idx"
    assert invoke("sample", data, "--n-samples", "30").exit_code == 0
    assert invoke("index", "--data", data, "--model", "random", "--out", index).exit_code == 0
    time.sleep(0.05)
    assert invoke("sample", data, "--n-samples", "30", "--force").exit_code == 0
    again = invoke("index", "--data", data, "--model", "random", "--out", index)
    assert again.exit_code == 0 and "reused as it is" in again.output
    assert invoke("sample", data, "--n-samples", "30", "--seed", "1", "--force").exit_code == 0
    changed = invoke("index", "--data", data, "--model", "random", "--out", index)
    assert changed.exit_code == 2 and "was built differently (the dataset changed" in changed.stderr


@pytest.mark.parametrize("fmt", ["git10m", "bigearthnet-txt", "rs-captions"])
def test_every_fixture_regenerated_on_an_unchanged_seed_keeps_its_files_times(fmt: str, tmp_path) -> None:  # noqa: ANN001
    """As for CrisisLandMark: the README and a docs page both run `sample --force`; the second
    must not make the first's caption index or task stale."""
    import time

    from tests.cli.test_cli import invoke

    data = tmp_path / "d"
    assert invoke("sample", data, "--format", fmt, "--n-samples", "20").exit_code == 0
    before = {p.relative_to(data): p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()}
    time.sleep(0.05)
    assert invoke("sample", data, "--format", fmt, "--n-samples", "20", "--force").exit_code == 0
    assert {p.relative_to(data): p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()} == before
