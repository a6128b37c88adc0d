"""Timing whole processes for the benchmarks: what users run is a fresh process each time."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Mapping


def measure(command: list[str], repeats: int, env: Mapping[str, str] | None = None) -> tuple[float, float, str]:
    """Median wall seconds and peak RSS (MiB) of a command, each repeat a fresh process;
    returns its standard output too."""
    walls, peaks, out = [], [], ""
    for _ in range(repeats):
        started = time.perf_counter()
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=dict(env) if env is not None else None) as child:
            out = child.stdout.read()  # type: ignore[union-attr]
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
        walls.append(time.perf_counter() - started)
        peaks.append(usage.ru_maxrss / 1024)
        if child.returncode:
            raise SystemExit(f"{' '.join(command)} failed with exit code {child.returncode}")
    return statistics.median(walls), max(peaks), out
