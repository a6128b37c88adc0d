"""One writer per output: two runs into the same ``--out`` would interleave their batches and
renames. A run holds ``.NAME.lock`` beside its output with ``flock``, and writes its pid, host,
start time and command there so that a second run can say who holds it. The kernel drops the
lock when its holder dies; a lock file whose lock could be taken but still names a holder is
the trace of a run that is gone, taken over with a warning."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rsretrieve.errors import BusyError, warn


def lock_path(out: Path) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.lock")


def _holder_text(info: Any) -> str:
    if not isinstance(info, dict):
        return "an unknown holder"
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {when}: {info.get('command', '?')}"


def _read_holder(handle: Any) -> Any:
    handle.seek(0)
    text = handle.read()
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"command": text.strip()[:80]}


@contextmanager
def output_lock(out: Path, command: str | None = None) -> Iterator[None]:
    """Hold the lock of output ``out`` for the block; another holder is a BusyError naming it."""
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the whole block
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(handle)
            handle.close()
            raise BusyError(f"{out} is being written by another rsretrieve run ({_holder_text(holder)}; lock {path}); "
                            "wait for it to finish or choose another output") from None
        try:
            same_file = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        handle.close()  # the holder removed the file as we opened it: lock the new one
    try:
        stale = _read_holder(handle)
        if stale is not None:
            warn(f"took over the lock of {out} from a run that is gone ({_holder_text(stale)})")
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                                 "command": command or " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))}))
        handle.flush()
        yield
    finally:
        try:
            path.unlink()  # while still held, so that no one locks a file about to vanish
        except FileNotFoundError:
            pass
        handle.close()
