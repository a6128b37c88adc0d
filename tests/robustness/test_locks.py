"""Two runs into one output: the second says who holds it and exits 2; a lock left by a run
that is gone is taken over with a warning. Index (plain, shard folders), caption indexes,
train and leaderboard all hold the lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsretrieve.config import IndexJob
from rsretrieve.errors import BusyError
from rsretrieve.jobs import run_index_job, shard_dir
from rsretrieve.locks import lock_path, output_lock
from tests.cli.test_cli import assert_user_error, invoke

HELD = rf"is being written by another rsretrieve run \(pid {os.getpid()} on .*lock .*\); wait for it"


def test_a_second_index_into_the_same_out_says_who_holds_it(sample_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    with output_lock(out, "rsretrieve index --out idx"):
        result = invoke("index", "--data", sample_root, "--model", "random", "--out", out)
        assert_user_error(result, HELD + ".*|" + HELD)
        assert "rsretrieve index --out idx" in result.stderr
    assert not out.exists() and not lock_path(out).exists()
    assert invoke("index", "--data", sample_root, "--model", "random", "--out", out).exit_code == 0
    assert not lock_path(out).exists()  # released and removed


def test_every_writer_of_a_folder_takes_the_lock(sample_root: Path, tmp_path: Path) -> None:
    from rsretrieve.datasets.fixtures.git10m import generate_git10m

    git = generate_git10m(tmp_path / "git", n_rows=20, seed=0)
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ndata: {sample_root}\nmodels: [random]\nmetrics: [mrr]\nmain_metric: mrr\n")
    cases = {
        "captions": ("index", "--dataset", "git10m", "--what", "captions", "--data", git, "--model", "random", "--out"),
        "train": ("train", "--data", sample_root, "--epochs", 1, "--out"),
        "board": ("leaderboard", suite, "--out"),
    }
    for name, args in cases.items():
        out = tmp_path / name
        with output_lock(out):
            assert_user_error(invoke(*args, out), HELD)
        assert not out.exists()


def test_two_workers_given_the_same_shard_do_not_both_write_it(sample_root: Path, tmp_path: Path) -> None:
    folder = shard_dir(tmp_path / "idx", 0, 2)
    job = IndexJob(data=str(sample_root), model="random")
    with output_lock(folder), pytest.raises(BusyError, match="shard-0-of-2 is being written by another rsretrieve run"):
        run_index_job(job, folder, shard=(0, 2))
    assert run_index_job(job, folder, shard=(0, 2))["counts"]["total"] > 0


def test_a_lock_left_by_a_killed_run_is_taken_over(sample_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from rsretrieve.locks import output_lock\n"
         f"with output_lock({str(out)!r}, 'rsretrieve index (holder)'):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = subprocess.run([Path(sys.executable).with_name("rsretrieve"), "index", "--data", sample_root, "--model", "random",
                               "--out", out], capture_output=True, text=True, timeout=120)
        assert busy.returncode == 2 and f"pid {holder.pid} on " in busy.stderr and "Traceback" not in busy.stderr
        holder.send_signal(signal.SIGKILL)  # gone without cleaning up: its lock file stays, its flock goes
        holder.wait()
    finally:
        holder.kill()
    left = json.loads(lock_path(out).read_text())
    assert left["pid"] == holder.pid and left["started"] <= time.time()
    result = invoke("index", "--data", sample_root, "--model", "random", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"took over the lock of {out} from a run that is gone (pid {holder.pid} on" in result.stderr
    assert not lock_path(out).exists()
