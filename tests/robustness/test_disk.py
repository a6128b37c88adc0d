"""Faults of the machine: a full disk, a quota or an I/O error while writing is one error line
naming the path (and the space the step needs); nothing half-written remains, and a rerun
after space is freed resumes. A small tmpfs is used where this machine lets the tests mount
one; the faults are injected otherwise (and always, for the writers that report no errno)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.errors import DiskError
from rsretrieve.evaluate import save_slice_runs
from rsretrieve.index import build_index, load_index
from rsretrieve.io import disk_fault
from rsretrieve.runs import Run, write_run
from tests.cli.test_cli import assert_user_error, invoke


@pytest.fixture
def tiny_disk(tmp_path: Path):  # noqa: ANN201
    """A 600 kB tmpfs, or a skip where mounting is not allowed."""
    where = tmp_path / "tiny"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the injected faults below cover the same code")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp" in p.name)


def test_the_faults_are_recognised_with_and_without_an_errno() -> None:
    assert disk_fault(OSError(errno.ENOSPC, "No space left on device")) == "no space left on device"
    assert disk_fault(OSError(errno.EDQUOT, "Disk quota exceeded")) == "disk quota exceeded"
    assert disk_fault(OSError(errno.EIO, "Input/output error")) == "input/output error"
    assert disk_fault(OSError("147456 requested and 93152 written")).startswith("a short write")  # numpy's, no errno
    assert disk_fault(RuntimeError("Error in faiss::FileIOWriter: write error (No space left on device)")) == "no space left on device"
    assert disk_fault(OSError(errno.ENOENT, "No such file")) is None and disk_fault(ValueError("x")) is None


def test_an_index_that_cannot_fit_is_refused_before_any_work(tiny_disk: Path) -> None:
    result = invoke("index", "--out", tiny_disk / "idx")
    assert_user_error(result, r"cannot write the index at .*tiny/idx: it needs about [\d.]+ MB and the disk there has [\d.]+ kB free")
    assert "loading encoder" in result.stderr and not list(tiny_disk.iterdir())  # nothing written, not even a partial build


def test_a_run_set_that_cannot_fit_is_refused_whole_and_a_freed_disk_takes_it(tiny_disk: Path, index_dir: Path) -> None:
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * 590_000)
    common = ("eval", "--index", index_dir, "--save-run", tiny_disk / "r.trec", "--depth", 1000,
              "--out", tiny_disk / "r.results.json")
    assert_user_error(invoke(*common), r"cannot write the runs of every slice at .*r\.trec: it needs about .* free")
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]
    filler.unlink()
    assert invoke(*common).exit_code == 0
    assert {"r.trec", "r.s1.trec", "r.s2.trec", "r.slices.json", "r.results.json"} <= {p.name for p in tiny_disk.iterdir()}


def test_a_full_disk_while_the_index_folder_is_written_resumes_after(sample_root, tiny_pipeline, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import faiss

    out, ds = tmp_path / "idx", CrisisLandMark(sample_root)
    real = faiss.write_index

    def full(index, path):  # noqa: ANN001, ANN202
        raise RuntimeError(f"Error in faiss::FileIOWriter::FileIOWriter: write error in {path}: 0 != 1 (No space left on device)")

    monkeypatch.setattr(faiss, "write_index", full)
    with pytest.raises(DiskError, match=rf"cannot write {out}: no space left on device \(.* free there; this step needs about [\d.]+ kB\); nothing half-written"):
        build_index(ds, tiny_pipeline, out, batch_size=8)
    assert not out.exists() and not _leftovers(tmp_path)  # no folder, no temporary folder
    saved = sorted((tmp_path / "idx.partial").glob("batch-*.npz"))
    assert len(saved) == -(-len(ds.samples) // 8)  # every embedded batch kept for the rerun

    monkeypatch.setattr(faiss, "write_index", real)
    embedded: list[int] = []
    original = tiny_pipeline.embed
    monkeypatch.setattr(tiny_pipeline, "embed", lambda batch: embedded.append(1) or original(batch))
    build_index(ds, tiny_pipeline, out, batch_size=8)
    assert embedded == [] and load_index(out).embeddings.shape[0] == len(ds.samples)  # resumed: nothing embedded again


def test_numpy_short_write_and_a_batch_write_are_one_error(sample_root, tiny_pipeline, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    ds = CrisisLandMark(sample_root)

    def short(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("147456 requested and 93152 written")

    monkeypatch.setattr(np, "save", short)
    with pytest.raises(DiskError, match=r"idx: a short write \(a full disk, a quota or a file-size limit"):
        build_index(ds, tiny_pipeline, tmp_path / "idx", batch_size=8)
    monkeypatch.undo()

    def quota(self, data):  # noqa: ANN001, ANN202
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(Path, "write_bytes", quota)
    with pytest.raises(DiskError, match=r"batch-000000\.npz: disk quota exceeded"):
        build_index(ds, tiny_pipeline, tmp_path / "idx2", batch_size=8)
    assert not _leftovers(tmp_path / "idx2.partial")


def test_a_failing_slice_leaves_the_earlier_run_set_whole(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from rsretrieve.evaluate import Corpus

    run = Run.from_dict({"q1": {"a": 1.0, "b": 0.5}})
    corpus = Corpus({"a": "s1", "b": "s2"})
    save_slice_runs({"all": run, "s1": run}, corpus, tmp_path / "r.trec", {})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    calls: list[Path] = []

    def fails_second(run, path, tag="rsretrieve", as_json=None):  # noqa: ANN001, ANN202
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error", str(path))
        write_run(run, path, tag, as_json)

    monkeypatch.setattr("rsretrieve.evaluate.write_run", fails_second)
    with pytest.raises(DiskError, match="input/output error"):
        save_slice_runs({"all": Run.from_dict({"q1": {"b": 1.0}}), "s1": run}, corpus, tmp_path / "r.trec", {})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # the old set, whole; no temporary files


def test_a_fault_outside_the_writers_is_still_one_line(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    def full(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "fused.json"))

    monkeypatch.setattr("rsretrieve.fusion.fuse_files", full)
    a = tmp_path / "a.trec"
    a.write_text("q1 Q0 d1 1 1.0 x\n")
    assert_user_error(invoke("fuse", a, a, "--out", tmp_path / "fused.json"), r"cannot write .*fused\.json: no space left on device")


def test_a_file_size_limit_is_one_line_and_the_rerun_resumes(sample_root: Path, tmp_path: Path) -> None:
    """ulimit -f, for real, in a child process: the kernel refuses the write past the limit."""
    import resource
    import sys

    command = [str(Path(sys.executable).with_name("rsretrieve")), "index", "--data", str(sample_root), "--model", "random",
               "--batch-size", "8", "--out", str(tmp_path / "idx")]

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (6_000, 6_000))

    done = subprocess.run(command, capture_output=True, text=True, timeout=120, preexec_fn=limited)
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    assert "cannot write" in lines[0] and ("file too large" in lines[0] or "short write" in lines[0])
    assert not (tmp_path / "idx").exists() and not _leftovers(tmp_path)
    saved = len(list((tmp_path / "idx.partial").glob("batch-*.npz")))
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert saved >= 1 and load_index(tmp_path / "idx").embeddings.shape[0] == 35  # the test split, saved batches reused
