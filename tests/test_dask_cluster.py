"""The dask engine on a real dask.distributed cluster over loopback TCP: the merged index is
the unsharded one byte for byte, also when a worker process is killed in the middle of a
shard (dask reschedules the shard, which resumes from its saved batches)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from rsretrieve.config import IndexJob
from rsretrieve.datasets.fixtures.crisislandmark import generate_sample
from rsretrieve.index import load_index
from rsretrieve.jobs import run_index_job, run_sharded
from tests.cli.test_cli import assert_user_error, invoke

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():  # noqa: ANN201
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  protocol="tcp", dashboard_address=None) as local:
        yield local


@pytest.fixture(scope="module")
def slow_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gzip shards read one sample a batch: slow enough to kill a worker in mid-shard."""
    return generate_sample(tmp_path_factory.mktemp("dask") / "clm", n_samples=200, seed=4, compression="gzip")


def _same(a: Path, b: Path) -> bool:
    return (a / "embeddings.npy").read_bytes() == (b / "embeddings.npy").read_bytes() and \
        load_index(a).keys == load_index(b).keys


def test_a_local_cluster_started_here_gives_the_unsharded_index(sample_root, tmp_path) -> None:  # noqa: ANN001
    job = IndexJob(data=str(sample_root), model="random", batch_size=4)
    run_index_job(job, tmp_path / "whole")
    manifest = run_sharded(job, tmp_path / "dask", 2, engine="dask", workers=2)
    assert len(manifest["merged_from"]) == 2 and _same(tmp_path / "dask", tmp_path / "whole")


def test_index_on_a_cluster_given_by_its_address(cluster, sample_root, tmp_path) -> None:  # noqa: ANN001
    address = cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    assert invoke("index", "--data", sample_root, "--out", tmp_path / "whole", "--model", "random", "--batch-size", 4).exit_code == 0
    result = invoke("index", "--data", sample_root, "--out", tmp_path / "idx", "--model", "random", "--batch-size", 4,
                    "--shards", 3, "--engine", "dask", "--scheduler", address)
    assert result.exit_code == 0, result.output
    assert _same(tmp_path / "idx", tmp_path / "whole")
    bad = invoke("index", "--data", sample_root, "--out", tmp_path / "x", "--model", "random", "--shards", 2,
                 "--engine", "dask", "--scheduler", "tcp://127.0.0.1:9")
    assert_user_error(bad, "--scheduler tcp://127.0.0.1:9: cannot reach a dask scheduler")


def test_one_local_worker_per_device(sample_root, tmp_path) -> None:  # noqa: ANN001
    job = IndexJob(data=str(sample_root), model="rsretrieve-tiny", batch_size=4)
    manifest = run_sharded(job, tmp_path / "dev", 2, engine="dask", devices=["cpu", "cpu"])
    assert manifest["counts"]["total"] == len(load_index(tmp_path / "dev").keys)


def test_a_killed_worker_is_rescheduled_and_its_shard_resumes(cluster, slow_data, tmp_path) -> None:  # noqa: ANN001
    job = IndexJob(data=str(slow_data), model="random", batch_size=1)
    run_index_job(job, tmp_path / "whole")
    client = distributed.Client(cluster)
    pids = client.run(os.getpid)
    out = tmp_path / "idx"
    partial = Path(f"{out}.shards") / "shard-0-of-2.partial"
    outcome: dict[str, object] = {}
    runner = threading.Thread(target=lambda: outcome.update(
        manifest=run_sharded(job, out, 2, engine="dask", scheduler=cluster.scheduler_address)))
    runner.start()
    deadline = time.monotonic() + 120
    while len(list(partial.glob("batch-*.npz"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    busy = [w for w, keys in client.processing().items() if "rsretrieve-shard-0-of-2" in keys]
    saved = len(list(partial.glob("batch-*.npz")))
    os.kill(pids[busy[0]], signal.SIGKILL)
    runner.join(timeout=300)
    client.close()
    assert 5 <= saved < 80, "the worker was not killed in the middle of its shard"
    assert "manifest" in outcome and _same(out, tmp_path / "whole")
