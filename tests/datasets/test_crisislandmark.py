"""Reader: filters, streaming batches, attributes, and every bad-input case."""

from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.errors import ConfigError, DataError
from tests.conftest import replace_image


def _read_all(ds: CrisisLandMark, batch_size: int = 8) -> dict[str, np.ndarray]:
    return {k: img for b in ds.iter_batches(ds.plan_batches(batch_size)) for k, img in zip(b.keys, b.images)}


def _first(root: Path, sensor: str) -> str:
    return next(s.key for s in CrisisLandMark(root).samples if s.sensor == sensor)


def test_split_sensor_and_limit_filters(sample_root) -> None:  # noqa: ANN001
    test = CrisisLandMark(sample_root)
    train = CrisisLandMark(sample_root, split="train")
    corpus = CrisisLandMark(sample_root, split="corpus")
    assert [s.key for s in corpus.samples] == [s.key for s in test.samples]
    assert not {s.key for s in test.samples} & {s.key for s in train.samples}
    assert len(test.samples) + len(train.samples) == 40
    s1 = CrisisLandMark(sample_root, sensors=("s1",))
    assert s1.samples and all(s.sensor == "s1" for s in s1.samples)
    assert len(CrisisLandMark(sample_root, limit=5).samples) == 5
    with pytest.raises(ConfigError, match="unknown split 'val'"):
        CrisisLandMark(sample_root, split="val")


def test_batches_are_single_sensor_and_cover_everything(sample_root) -> None:  # noqa: ANN001
    ds = CrisisLandMark(sample_root)
    batches = ds.plan_batches(7)
    assert all(len({s.sensor for s in b}) == 1 for b in batches)
    assert sorted(s.key for b in batches for s in b) == sorted(s.key for s in ds.samples)
    for batch in ds.iter_batches(batches):
        bands = 12 if batch.sensor == "s2" else 2
        assert batch.images.shape[1:] == (bands, 120, 120)
        assert batch.images.dtype == np.float32


def test_read_sample_attributes(sample_root) -> None:  # noqa: ANN001
    ds = CrisisLandMark(sample_root)
    s1 = ds.read_sample(_first(sample_root, "s1"))
    assert s1.image.shape == (2, 120, 120) and s1.coords.shape == (2, 120, 120)
    assert 32600 < s1.crs < 32800
    benv2 = next(s.key for s in ds.samples if s.key.startswith("benv2"))
    assert ds.read_sample(benv2).timestamp is None  # stored as NaN: not available
    with pytest.raises(DataError, match="'nope' is not in the selected samples"):
        ds.read_sample("nope")


def test_missing_files_and_folders(tmp_path, sample_copy) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match="dataset folder .* not found"):
        CrisisLandMark(tmp_path / "absent")
    (sample_copy / "metadata.parquet").unlink()
    with pytest.raises(DataError, match="metadata.parquet not found"):
        CrisisLandMark(sample_copy)


def test_missing_shard_names_the_file_and_key(sample_copy) -> None:  # noqa: ANN001
    (sample_copy / "quakeset.h5").unlink()
    ds = CrisisLandMark(sample_copy)
    with pytest.raises(DataError, match=r"shard file .*quakeset\.h5 \(linked from key 'quakeset_\d+'\) not found"):
        _read_all(ds)


def test_broken_link_inside_a_shard(sample_copy) -> None:  # noqa: ANN001
    key = _first(sample_copy, "s2")
    with h5py.File(sample_copy / "crisislandmark.h5", "a") as main:
        shard = main.get(key, getlink=True).filename
        del main[key]
        main[key] = h5py.ExternalLink(shard, "/no/such/group")
    with pytest.raises(DataError, match=f"broken link: key '{key}' points to .*/no/such/group"):
        _read_all(CrisisLandMark(sample_copy))


def test_external_link_outside_the_dataset_folder_is_refused(sample_copy) -> None:  # noqa: ANN001
    key = _first(sample_copy, "s2")
    outside = sample_copy.parent / "evil.h5"
    with h5py.File(outside, "w") as f:
        f.create_group(key).create_dataset("image", data=np.zeros((12, 120, 120), np.float32))
    with h5py.File(sample_copy / "crisislandmark.h5", "a") as main:
        del main[key]
        main[key] = h5py.ExternalLink("../evil.h5", key)
    with pytest.raises(DataError, match=f"key '{key}' links outside the dataset folder to '../evil.h5'"):
        _read_all(CrisisLandMark(sample_copy))


def test_wrong_band_count_for_the_sensor(sample_copy) -> None:  # noqa: ANN001
    key = _first(sample_copy, "s1")
    replace_image(sample_copy, key, np.zeros((12, 120, 120), np.float32))
    with pytest.raises(DataError, match=rf"key '{key}': image shape \(12, 120, 120\) does not match sensor s1 \(2, 120, 120\)"):
        _read_all(CrisisLandMark(sample_copy))


def test_wrong_patch_size(sample_copy) -> None:  # noqa: ANN001
    key = _first(sample_copy, "s2")
    replace_image(sample_copy, key, np.zeros((12, 64, 64), np.float32))
    with pytest.raises(DataError, match=rf"key '{key}': image shape \(12, 64, 64\)"):
        _read_all(CrisisLandMark(sample_copy))


def test_nonfinite_pixels_replaced_and_counted_or_rejected(sample_copy) -> None:  # noqa: ANN001
    key = _first(sample_copy, "s2")
    image = CrisisLandMark(sample_copy).read_sample(key).image
    image[0, :2, :5] = np.nan
    image[3, 0, 0] = np.inf
    replace_image(sample_copy, key, image)
    ds = CrisisLandMark(sample_copy)
    batches = list(ds.iter_batches(ds.plan_batches(100)))
    assert sum(b.nonfinite for b in batches) == 11
    cleaned = _read_all(ds)[key]
    assert np.isfinite(cleaned).all() and cleaned[0, 0, 0] == 0.0
    with pytest.raises(DataError, match=f"key '{key}': 11 NaN/inf pixels"):
        _read_all(CrisisLandMark(sample_copy, strict=True))


def _rewrite_metadata(root: Path, **columns: list) -> None:
    table = pq.read_table(root / "metadata.parquet")
    data = {name: table.column(name).to_pylist() for name in table.column_names}
    data.update(columns)
    data = {k: v for k, v in data.items() if v is not None}
    pq.write_table(pa.table(data), root / "metadata.parquet")


def test_metadata_problems_name_the_field(sample_copy) -> None:  # noqa: ANN001
    rows = pq.read_table(sample_copy / "metadata.parquet").num_rows
    _rewrite_metadata(sample_copy, split=None)
    with pytest.raises(DataError, match="missing column.* split"):
        CrisisLandMark(sample_copy)
    _rewrite_metadata(sample_copy, split=["validation"] * rows)
    with pytest.raises(DataError, match="field 'split' is 'validation'"):
        CrisisLandMark(sample_copy)


def test_key_in_metadata_but_not_in_main_file(sample_copy) -> None:  # noqa: ANN001
    key = _first(sample_copy, "s2")
    with h5py.File(sample_copy / "crisislandmark.h5", "a") as main:
        del main[key]
    with pytest.raises(DataError, match=f"key '{key}' \\(listed in metadata.parquet\\) not found"):
        _read_all(CrisisLandMark(sample_copy))


def test_empty_corpus_after_filters(sample_copy) -> None:  # noqa: ANN001
    rows = pq.read_table(sample_copy / "metadata.parquet").num_rows
    _rewrite_metadata(sample_copy, split=["train"] * rows)
    with pytest.raises(DataError, match="no samples left after filters"):
        CrisisLandMark(sample_copy)


def test_fingerprint_changes_with_content(sample_copy, sample_root) -> None:  # noqa: ANN001
    before = CrisisLandMark(sample_root).fingerprint()
    assert CrisisLandMark(sample_copy).fingerprint() == before
    (sample_copy / "mmflood.h5").write_bytes((sample_copy / "mmflood.h5").read_bytes() + b"x")
    assert CrisisLandMark(sample_copy).fingerprint() != before
