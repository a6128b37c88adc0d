"""A real `rsretrieve index` process to kill between batches. The tiny model keeps it cheap
(one import of torch, no large weights); one image a batch and a niced child make "between
batches" certain: the test polls every 5 ms and, on a busy machine, is scheduled before the
child it watches."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# the sample's 35 indexable patches, one a batch: the kill lands long before the last one
COMMAND = ("--model", "rsretrieve-tiny", "--batch-size", "1")


def index_args(data: Path, out: Path, *extra: str) -> list[str]:
    """The arguments of an `rsretrieve index` run to kill (and to rerun in process)."""
    return ["index", "--data", str(data), "--out", str(out), *COMMAND, *extra]


def start(args: list[str]) -> subprocess.Popen:
    """``rsretrieve ARGS`` as a real process (tests/conftest.py has set HF_HUB_OFFLINE)."""
    return subprocess.Popen([str(Path(sys.executable).with_name("rsretrieve")), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.nice(10))


def wait_for_batches(process: subprocess.Popen, partial: Path, count: int) -> None:
    """Wait until ``count`` batches are saved in ``partial``, or the run ended."""
    deadline = time.monotonic() + 120
    while len(list(partial.glob("batch-*.npz"))) < count and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
