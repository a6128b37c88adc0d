"""Parallel readers: the same bytes for every reader count, errors named as in one process,
a dead worker named with its batch, and a rerun that resumes from the saved batches."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.datasets.fixtures.crisislandmark import generate_sample
from rsretrieve.datasets.readers import MAX_DEFAULT_READERS, check_readers, default_readers, read_batches
from rsretrieve.embeddings import build_pipeline
from rsretrieve.encoders import EncoderSpec
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.index import build_index
from tests.conftest import first_key, replace_image

RANDOM = EncoderSpec("random", "random")


def _embeddings(data: Path, out: Path, readers: int, spec: EncoderSpec = RANDOM, batch_size: int = 4) -> bytes:
    build_index(CrisisLandMark(data), build_pipeline(spec), out, batch_size, readers=readers)
    return (out / "embeddings.npy").read_bytes()


def test_embeddings_are_the_same_bytes_for_every_reader_count(sample_root, tmp_path) -> None:  # noqa: ANN001
    one = _embeddings(sample_root, tmp_path / "r1", 1)
    for readers in (2, 3, 5):
        assert _embeddings(sample_root, tmp_path / f"r{readers}", readers) == one, readers


def test_a_torch_model_gets_the_same_bytes_too(sample_root, tmp_path) -> None:  # noqa: ANN001
    default = EncoderSpec()
    assert _embeddings(sample_root, tmp_path / "a", 1, default) == _embeddings(sample_root, tmp_path / "b", 3, default)


def test_batches_come_back_in_planned_order_with_their_pixels(sample_root) -> None:  # noqa: ANN001
    dataset = CrisisLandMark(sample_root)
    planned = dataset.plan_batches(3)
    alone = [(b.keys, b.images.copy()) for b in read_batches(dataset, planned, 1)]
    together = [(b.keys, b.images.copy()) for b in read_batches(dataset, planned, 4)]
    assert [k for k, _ in together] == [[s.key for s in batch] for batch in planned]
    assert all(a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(alone, together))


@pytest.mark.parametrize("compression", ["gzip", "blosc", "lz4", "zstd"])
def test_compressed_shards_read_in_parallel(sample_root, tmp_path, compression) -> None:  # noqa: ANN001
    packed = generate_sample(tmp_path / compression, n_samples=40, seed=0, compression=compression)
    assert _embeddings(packed, tmp_path / "packed", 2) == _embeddings(sample_root, tmp_path / "plain", 1)


def test_nan_accounting_is_the_same_in_parallel(sample_copy, tmp_path) -> None:  # noqa: ANN001
    key = first_key(sample_copy, "benv2s2")
    image = CrisisLandMark(sample_copy).read_raw(key)
    image[0, :5, :5] = np.nan
    replace_image(sample_copy, key, image)
    manifests = [build_index(CrisisLandMark(sample_copy), build_pipeline(RANDOM), tmp_path / f"n{r}", 4, readers=r)
                 for r in (1, 3)]
    assert manifests[0]["nonfinite_pixels"] == manifests[1]["nonfinite_pixels"] == 25
    assert manifests[0]["nonfinite_keys"] == manifests[1]["nonfinite_keys"] == {key: 25}


def test_a_reader_error_names_the_file_and_key_as_in_one_process(sample_copy, tmp_path) -> None:  # noqa: ANN001
    key = first_key(sample_copy, "mmflood")
    replace_image(sample_copy, key, np.zeros((3, 120, 120), np.float32))
    messages = []
    for readers in (1, 2):
        with pytest.raises(DataError) as caught:
            build_index(CrisisLandMark(sample_copy), build_pipeline(RANDOM), tmp_path / f"e{readers}", 4, readers=readers)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and key in messages[0] and "mmflood.h5" in messages[0]


def test_a_killed_reader_names_its_batch_and_the_rerun_resumes(sample_root, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    dataset = CrisisLandMark(sample_root)
    planned = dataset.plan_batches(4)
    victim = 5
    target = planned[victim][0].key
    parent = os.getpid()
    real = CrisisLandMark._read_batch

    def dying(self, shards, batch, images):  # noqa: ANN001, ANN202
        if os.getpid() != parent and batch[0].key == target:
            os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
        return real(self, shards, batch, images)

    monkeypatch.setattr(CrisisLandMark, "_read_batch", dying)
    out = tmp_path / "idx"
    with pytest.raises(DataError, match=f"died \\(killed by signal 9.*batch {victim} .*'{target}'.*rerun to resume"):
        build_index(dataset, build_pipeline(RANDOM), out, 4, readers=2)
    saved = sorted(p.name for p in (tmp_path / "idx.partial").glob("batch-*.npz"))
    assert saved and f"batch-{victim:06d}.npz" not in saved

    monkeypatch.setattr(CrisisLandMark, "_read_batch", real)
    embedded: list[int] = []
    build_index(CrisisLandMark(sample_root), build_pipeline(RANDOM), out, 4, readers=2, on_batch=embedded.append)
    assert embedded[0] == sum(len(b) for b in planned[:victim])  # saved before the kill: not read again
    assert (out / "embeddings.npy").read_bytes() == _embeddings(sample_root, tmp_path / "fresh", 1)


def test_reader_counts(monkeypatch) -> None:  # noqa: ANN001
    assert 1 <= default_readers() <= MAX_DEFAULT_READERS
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert default_readers() == MAX_DEFAULT_READERS and check_readers(None) == MAX_DEFAULT_READERS
    assert check_readers(3) == 3
    with pytest.raises(ConfigError, match="--readers must be at least 1"):
        check_readers(0)


STUCK_READER = """
import sys, time
from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.datasets.readers import read_batches

class Slow(CrisisLandMark):
    def iter_batches_into(self, batches, allocate):  # a reader stuck on slow storage
        for batch in super().iter_batches_into(batches, allocate):
            time.sleep(60)
            yield batch

dataset = Slow(sys.argv[1], limit=8)
print("reading", flush=True)
for batch in read_batches(dataset, dataset.plan_batches(2), readers=2):
    pass
"""


def test_readers_end_with_their_parent(sample_root, tmp_path) -> None:  # noqa: ANN001
    """A SIGKILL to the main process (no cleanup runs there) still ends its readers, even
    while they are busy reading: the kernel kills them with their parent."""
    import subprocess
    import sys
    import time

    script = tmp_path / "stuck.py"
    script.write_text(STUCK_READER)
    main = subprocess.Popen([sys.executable, str(script), str(sample_root)], stdout=subprocess.PIPE, text=True)
    assert main.stdout.readline().strip() == "reading"

    def children() -> list[int]:
        return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == main.pid]

    deadline = time.monotonic() + 30
    while len(children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    readers = children()
    assert len(readers) == 2
    main.kill()
    main.wait()
    deadline = time.monotonic() + 5
    while [p for p in readers if _alive(p)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in readers if _alive(p)], "a reader outlived its parent"


def _ppid(proc: Path) -> int | None:
    try:
        return next(int(line.split()[1]) for line in (proc / "status").read_text().splitlines() if line.startswith("PPid:"))
    except (OSError, StopIteration):
        return None


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False
