"""ranx's numba kernels, compiled on first need with a visible message, not at install.

ranx serves fusion, leaderboard significance tests and ``eval --backend ranx``; its kernels
take about a minute to compile on 2 cores and are then cached by numba in ranx's own folder.
The first result of a new user (``rsretrieve demo``, scoring through pytrec_eval) needs no
ranx, so the install does not wait for it. ``scripts/bootstrap.sh`` starts the compile in
the background at low priority after the install; a command that needs ranx before it is
done waits for it (and says so), and where no compile ran, the first such command compiles
once, in a child process (``rsretrieve.fusion.compile_ranx`` covers every metric, fusion
method and test rsretrieve calls), says so on stderr, and leaves a stamp beside the cache.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

from rsretrieve.errors import ModelError
from rsretrieve.paths import cache_home

COMPILE = "from rsretrieve.fusion import compile_ranx; compile_ranx()"
CHILD = "RSRETRIEVE_COMPILING_RANX"  # set in the compiling child: its own ranx calls compile
_checked = False


def stamp_path() -> Path:
    """Where the stamp of this ranx + numba install lives: beside numba's cache in ranx's
    folder, or under the rsretrieve cache when that folder is read-only."""
    try:
        tag = f"{version('ranx')}-{version('numba')}"
    except PackageNotFoundError:  # pragma: no cover - ranx is a dependency
        tag = "unknown"
    spec = find_spec("ranx")
    folder = Path(spec.origin).parent / "__pycache__" if spec and spec.origin else cache_home()
    name = f".rsretrieve-compiled-{tag}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f"{name}.probe"
        probe.touch()
        probe.unlink()
        return folder / name
    except OSError:
        return cache_home() / name


def ensure_ranx() -> None:
    """Compile ranx's kernels if this install has not yet (once per process to check). One
    compiler at a time: a run that finds another one compiling (``scripts/bootstrap.sh``
    starts one in the background) says so and waits for it instead of compiling twice."""
    global _checked
    if _checked or os.environ.get(CHILD):
        return
    stamp = stamp_path()
    if stamp.is_file():
        _checked = True
        return
    stamp.parent.mkdir(parents=True, exist_ok=True)
    with open(stamp.with_name(stamp.name + ".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.stderr.write("waiting for ranx's numba kernels, being compiled in the background since the install ...\n")
            sys.stderr.flush()
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.is_file():
            _compile(stamp)
    _checked = True


def _compile(stamp: Path) -> None:
    sys.stderr.write("compiling ranx's numba kernels, first use after install (about a minute on 2 cores; cached) ...\n")
    sys.stderr.flush()
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", COMPILE], capture_output=True, text=True, env={**os.environ, CHILD: "1"})
    if result.returncode:
        raise ModelError(f"compiling ranx's kernels failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
    stamp.write_text(f"compiled in {time.perf_counter() - started:.0f} s\n")
    sys.stderr.write(f"ranx compiled in {time.perf_counter() - started:.0f} s\n")


if __name__ == "__main__":  # what scripts/bootstrap.sh runs in the background
    ensure_ranx()
