"""Sharded indexing: shards + merge equal one run, guards on merging, the Dask engine."""

import numpy as np
import pytest

from rsretrieve.config import IndexJob
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.index import load_index, merge_indexes
from rsretrieve.jobs import engine_options, run_index_job, run_sharded


def _vectors(folder):  # noqa: ANN001, ANN202
    index = load_index(folder)
    return dict(zip(index.keys, index.embeddings)), index


@pytest.fixture(scope="module")
def job(sample_root) -> IndexJob:  # noqa: ANN001
    return IndexJob(data=str(sample_root), model="rsretrieve-tiny", batch_size=4)


def test_shards_then_merge_equal_one_run(job, index_dir, tmp_path) -> None:  # noqa: ANN001
    shards = [tmp_path / f"s{i}" for i in range(3)]
    sizes = [run_index_job(job, folder, shard=(i, 3))["counts"]["total"] for i, folder in enumerate(shards)]
    manifest = merge_indexes([shards[2], shards[0], shards[1]], tmp_path / "merged")
    merged, loaded = _vectors(tmp_path / "merged")
    whole, reference = _vectors(index_dir)
    assert sum(sizes) == len(whole) == manifest["counts"]["total"] and manifest["dataset"]["shard"] is None
    assert loaded.keys[: sizes[0]] == load_index(shards[0]).keys  # shard order kept
    for key, vector in whole.items():
        np.testing.assert_allclose(merged[key], vector, atol=1e-6)
    assert manifest["counts"]["s1"] + manifest["counts"]["s2"] == manifest["counts"]["total"]


def test_merge_refuses_incomplete_duplicate_or_foreign_shards(job, index_dir, tmp_path) -> None:  # noqa: ANN001
    a, b = tmp_path / "a", tmp_path / "b"
    run_index_job(job, a, shard=(0, 2))
    run_index_job(job, b, shard=(1, 2))
    with pytest.raises(DataError, match="needs shards 0..1 of 2 exactly once; got 0/2"):
        merge_indexes([a], tmp_path / "m1")
    with pytest.raises(DataError, match="got 0/2, 0/2"):
        merge_indexes([a, a], tmp_path / "m2")
    other = tmp_path / "other"
    run_index_job(IndexJob(**{**job.__dict__, "seed": 7}), other, shard=(1, 2))
    with pytest.raises(DataError, match="their 'encoder' differ"):
        merge_indexes([a, other], tmp_path / "m3")
    with pytest.raises(DataError, match="their 'batch_size' differ"):
        merge_indexes([a, index_dir], tmp_path / "m4")
    run_index_job(job, tmp_path / "whole")
    with pytest.raises(DataError, match="whole is not a shard"):
        merge_indexes([a, tmp_path / "whole"], tmp_path / "m5")
    with pytest.raises(ConfigError, match="--shard must be I/N with 0 <= I < N, got 2/2"):
        run_index_job(job, tmp_path / "x", shard=(2, 2))


RANDOM_JOB = {"model": "random", "batch_size": 4}


def test_merged_shards_are_the_unsharded_index_byte_for_byte(sample_root, tmp_path) -> None:  # noqa: ANN001
    job = IndexJob(data=str(sample_root), **RANDOM_JOB)
    whole = run_index_job(job, tmp_path / "whole")
    merged = run_sharded(job, tmp_path / "merged", 3)
    assert (tmp_path / "merged" / "embeddings.npy").read_bytes() == (tmp_path / "whole" / "embeddings.npy").read_bytes()
    assert load_index(tmp_path / "merged").keys == load_index(tmp_path / "whole").keys
    assert merged["counts"] == whole["counts"]
    assert not (tmp_path / "merged.shards").exists()  # merged: the shard copies are gone


def test_a_current_merged_index_is_reused_and_a_different_one_refused_before_work(sample_root, tmp_path) -> None:  # noqa: ANN001
    job = IndexJob(data=str(sample_root), **RANDOM_JOB)
    run_sharded(job, tmp_path / "idx", 2)
    again = run_sharded(job, tmp_path / "idx", 2)
    assert again.get("reused") is True
    with pytest.raises(DataError, match="built differently.*--force"):
        run_sharded(IndexJob(data=str(sample_root), model="random", batch_size=8), tmp_path / "idx", 2)
    assert not (tmp_path / "idx.shards").exists()  # refused before any shard was indexed
    assert run_sharded(job, tmp_path / "idx", 2, force=True).get("reused") is None


def test_engine_options_without_shards_or_a_cluster_are_errors() -> None:
    with pytest.raises(ConfigError, match="--engine, --scheduler apply to --shards N"):
        engine_options(None, "dask", "tcp://127.0.0.1:1", None, None)
    with pytest.raises(ConfigError, match="--devices must list devices"):
        engine_options(2, "dask", None, None, " , ")
    assert engine_options(2, "dask", None, None, "cuda:0, cuda:1") == ["cuda:0", "cuda:1"]


def test_local_engine_refuses_cluster_options(sample_root, tmp_path) -> None:  # noqa: ANN001
    job = IndexJob(data=str(sample_root), **RANDOM_JOB)
    with pytest.raises(ConfigError, match="--scheduler needs --engine dask"):
        run_sharded(job, tmp_path / "x", 2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="--workers sizes the LocalCluster"):
        run_sharded(job, tmp_path / "x", 2, engine="dask", scheduler="tcp://127.0.0.1:1", workers=2)
    with pytest.raises(ConfigError, match="--engine must be one of local, dask"):
        run_sharded(job, tmp_path / "ray", 2, engine="ray")
