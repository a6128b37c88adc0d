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
from tests.robustness import killable

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


def _lock_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """A lock path made hostile in every way: each is refused, and the thing there is untouched."""
    users = tmp_path / "users-file.txt"
    users.write_text("precious\n")
    cases = {}
    link = tmp_path / "link"
    lock_path(link).symlink_to(users)
    cases["symlink"] = (link, "is a symbolic link")
    folder = tmp_path / "folder"
    lock_path(folder).mkdir()
    cases["folder"] = (folder, "is a folder")
    fifo = tmp_path / "fifo"
    os.mkfifo(lock_path(fifo))
    cases["fifo"] = (fifo, "is not a regular file")
    binary = tmp_path / "binary"
    lock_path(binary).write_bytes(b"\xff\xfe not utf-8 \x80")
    cases["not utf-8"] = (binary, "holds something else")
    hard = tmp_path / "hard"
    os.link(users, lock_path(hard))
    cases["hard link"] = (hard, "has 2 names")
    other = tmp_path / "other"
    lock_path(other).write_text('{"some": "json of the user"}')
    cases["foreign json"] = (other, "holds something else")
    return cases


def test_a_lock_path_that_is_not_our_lock_file_is_refused_and_left_alone(sample_root: Path, tmp_path: Path) -> None:
    cases = _lock_cases(tmp_path)
    before = {name: (lock_path(out).lstat().st_mode, lock_path(out).read_bytes() if lock_path(out).is_file() else None)
              for name, (out, _) in cases.items() if name != "fifo"}
    for name, (out, says) in cases.items():
        result = invoke("index", "--data", sample_root, "--model", "random", "--out", out)
        assert_user_error(result, rf"lock .*{lock_path(out).name} {says}.*: it is not an rsretrieve lock file")
        assert not out.exists(), name
    for name, (mode, data) in before.items():
        path = lock_path(cases[name][0])
        assert path.lstat().st_mode == mode, name
        if data is not None:
            assert path.read_bytes() == data, name
    assert (tmp_path / "users-file.txt").read_text() == "precious\n"  # the link was not followed


def _reader_pids(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), None)
            if ppid == parent and b"--readers" in cmdline:
                found.append(int(entry.name))
    return found


HOLDER_THAT_FORKS = """
import os, sys, time
from rsretrieve.locks import output_lock
with output_lock(sys.argv[1], "rsretrieve index (forking holder)"):
    if os.fork() == 0:  # a child that outlives its parent, as a stuck reader would
        time.sleep(30)
        os._exit(0)
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_forked_child_does_not_keep_the_lock(tmp_path: Path) -> None:
    """flock belongs to the open file, which fork shares: without care, any child left behind
    by a killed run would block every rerun."""
    out = tmp_path / "idx"
    script = tmp_path / "holder.py"
    script.write_text(HOLDER_THAT_FORKS)
    holder = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.kill()
        holder.wait()
        # the child drops its copy in its at-fork hook, as soon as it is first scheduled:
        # on a loaded machine (parallel tests) that can come a moment after the parent died
        deadline = time.monotonic() + 10
        with pytest.warns(Warning, match="took over the lock"):
            while True:
                try:
                    with output_lock(out):
                        break
                except BusyError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
    finally:
        holder.kill()
        subprocess.run(["pkill", "-f", str(script)], check=False)


def test_a_killed_index_with_readers_leaves_no_reader_and_no_lock(sample_root: Path, tmp_path: Path) -> None:
    """Killing the main process of `index --readers 2` (SIGTERM) ends its readers; the rerun is
    not blocked, resumes, and gives a clean run's embeddings. (SIGKILL: the two tests above.)"""
    import numpy as np

    from rsretrieve.index import load_index

    out = tmp_path / "idx"
    process = killable.start(killable.index_args(sample_root, out, "--readers", "2"))
    killable.wait_for_batches(process, tmp_path / "idx.partial", 2)
    readers = _reader_pids(process.pid)
    assert readers, "the run had no reader processes to leave behind"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert process.returncode == 143 and "terminated (SIGTERM); rerun the same command to resume" in stderr
    assert not lock_path(out).exists()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
              for pid in readers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in readers if Path(f"/proc/{pid}").exists()
                and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()], "a reader outlived its run"
    # the rerun and the clean run in this process (the kill needed a real one)
    rerun = invoke(*killable.index_args(sample_root, out, "--readers", "2"))
    assert rerun.exit_code == 0, rerun.output
    assert "being written by another" not in rerun.output
    clean = tmp_path / "clean"
    assert invoke(*killable.index_args(sample_root, clean)).exit_code == 0
    resumed, fresh = load_index(out), load_index(clean)
    assert resumed.keys == fresh.keys
    np.testing.assert_array_equal(np.asarray(resumed.embeddings), np.asarray(fresh.embeddings))
