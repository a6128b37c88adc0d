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
    """One device, so one worker (each imports torch and open_clip, seconds) runs both shards;
    two workers of a local cluster: test_a_local_cluster_started_here_gives_the_unsharded_index."""
    job = IndexJob(data=str(sample_root), model="rsretrieve-tiny", batch_size=4)
    manifest = run_sharded(job, tmp_path / "dev", 2, engine="dask", devices=["cpu"])
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


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A dask scheduler and one worker started as a user starts them: separate processes, the
    worker in a folder of its own (not the client's working directory)."""
    import json
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("remote")
    (home / "worker").mkdir()
    info = home / "scheduler.json"
    python = [sys.executable, "-m"]
    scheduler = subprocess.Popen([*python, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(info)], cwd=home,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not info.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = subprocess.Popen([*python, "distributed.cli.dask_worker", "--scheduler-file", str(info), "--nthreads", "1",
                               "--no-dashboard", "--local-directory", str(home / "worker" / "scratch")],
                              cwd=home / "worker", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = json.loads(info.read_text())["address"]
    with distributed.Client(address, timeout="30s") as client:
        client.wait_for_workers(1, timeout=60)
    try:
        yield address, home / "worker"
    finally:
        for process in (worker, scheduler):
            process.terminate()
            process.wait(timeout=30)


def test_relative_paths_on_a_cluster_whose_worker_runs_in_another_folder(remote, sample_root, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    address, worker_home = remote
    client_home = tmp_path / "client"
    (client_home / "data").mkdir(parents=True)
    (client_home / "data" / "clm").symlink_to(sample_root)
    monkeypatch.chdir(client_home)
    assert invoke("index", "--data", "data/clm", "--out", "runs/whole", "--model", "random", "--batch-size", 4).exit_code == 0
    result = invoke("index", "--data", "data/clm", "--out", "runs/x", "--model", "random", "--batch-size", 4,
                    "--shards", 2, "--engine", "dask", "--scheduler", address)
    assert result.exit_code == 0, result.output
    assert _same(client_home / "runs" / "x", client_home / "runs" / "whole")
    assert not (worker_home / "runs").exists() and not (worker_home / "data").exists()  # nothing left in the worker's folder


def test_a_worker_that_cannot_see_the_dataset_or_fails_says_so_in_one_line(remote, sample_root, tmp_path) -> None:  # noqa: ANN001
    from rsretrieve.errors import DataError
    from rsretrieve.jobs import _shard_task

    address, _ = remote
    with distributed.Client(address, timeout="30s") as client:
        (worker,) = client.scheduler_info()["workers"]
        missing = dict(vars(IndexJob(data=str(tmp_path / "elsewhere" / "clm"), model="random")))
        with pytest.raises(DataError) as caught:
            client.submit(_shard_task, missing, str(tmp_path / "out"), 0, 2, False, pure=False).result()
        assert str(caught.value) == (f"shard 0 of 2 (worker {worker}): the dataset {tmp_path / 'elsewhere' / 'clm'} is not "
                                     "there on that machine; start the workers where this path exists (a shared file "
                                     "system), or give a path they all see")
        broken = dict(vars(IndexJob(data=str(sample_root), model="random")), seed="not a number")  # fails deep inside
        with pytest.raises(DataError) as caught:
            client.submit(_shard_task, broken, str(tmp_path / "out"), 1, 2, False, pure=False).result()
    message = str(caught.value)
    log = tmp_path / "out.shards" / "shard-1-of-2.log"
    assert message.startswith(f"shard 1 of 2 (worker {worker}) failed: ") and message.endswith(f"(traceback in {log})")
    assert "\n" not in message and "Traceback (most recent call last)" in log.read_text()
