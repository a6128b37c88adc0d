"""One writer per output: two runs into the same ``--out`` would interleave their batches and
renames. A run holds ``.NAME.lock`` beside its output with ``flock``, and writes its pid, host,
start time and command there so that a second run can say who holds it. The kernel drops the
lock when its holder dies; a lock file whose lock could be taken but still names a holder is
the trace of a run that is gone, taken over with a warning.

The lock path is the user's folder, so it is treated as hostile: a symbolic link is never
followed (``O_NOFOLLOW``), and anything but rsretrieve's own regular lock file (a folder, a
FIFO, a hard link to another file, text that is not a lock record) is refused and left as it
is. A forked child (a reader process) never keeps the lock: its copy of the descriptor is
pointed at /dev/null in the child, so a killed run's lingering children cannot block the next.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rsretrieve.errors import BusyError, DataError, warn

HOLDER_FIELDS = ("pid", "host", "started", "command")
_held: set[int] = set()  # descriptors of the locks this process holds


def _drop_in_child() -> None:
    """After fork: the child's copies of held lock descriptors no longer reference the lock."""
    if not _held:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        for fd in _held:
            try:
                os.dup2(null, fd)
            except OSError:
                pass
    finally:
        os.close(null)
    _held.clear()


os.register_at_fork(after_in_child=_drop_in_child)


def lock_path(out: Path) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.lock")


def _holder_text(info: Any) -> str:
    if not isinstance(info, dict):
        return "an unknown holder"
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {when}: {info.get('command', '?')}"


def _not_ours(path: Path, what: str) -> DataError:
    return DataError(f"lock {path} {what}: it is not an rsretrieve lock file, so it is left as it is; "
                     "remove or rename it, or choose another output")


def _open(path: Path) -> int:
    """The lock file's descriptor, created if absent; never through a link, never anything but a
    regular file of one name."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _not_ours(path, "is a symbolic link") from None
        if exc.errno == errno.EISDIR:
            raise _not_ours(path, "is a folder") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise DataError(f"cannot write lock {path}: {exc.strerror}") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _not_ours(path, "is not a regular file (a FIFO, socket or device)")
    if info.st_nlink != 1:
        os.close(fd)
        raise _not_ours(path, f"has {info.st_nlink} names (a hard link to another file)")
    return fd


def _read_holder(fd: int, path: Path) -> Any:
    """The lock record in the file: None when empty; refused when it is not one of ours."""
    data = os.pread(fd, 1 << 16, 0)
    if not data.strip():
        return None
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        record = None
    if not isinstance(record, dict) or not set(HOLDER_FIELDS) <= set(record):
        raise _not_ours(path, "holds something else")
    return record


@contextmanager
def output_lock(out: Path, command: str | None = None) -> Iterator[None]:
    """Hold the lock of output ``out`` for the block; another holder is a BusyError naming it."""
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = _read_holder(fd, path)
            finally:
                os.close(fd)
            raise BusyError(f"{out} is being written by another rsretrieve run ({_holder_text(holder)}; lock {path}); "
                            "wait for it to finish or choose another output") from None
        try:
            same_file = os.path.samestat(os.fstat(fd), os.lstat(path))
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)  # the holder removed the file as we opened it: lock the new one
    try:
        stale = _read_holder(fd, path)
    except DataError:
        os.close(fd)
        raise
    _held.add(fd)
    try:
        if stale is not None:
            warn(f"took over the lock of {out} from a run that is gone ({_holder_text(stale)})")
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                             "command": command or " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode("utf-8"), 0)
        yield
    finally:
        try:
            if os.path.samestat(os.fstat(fd), os.lstat(path)):
                path.unlink()  # while still held, so that no one locks a file about to vanish
        except FileNotFoundError:
            pass
        _held.discard(fd)
        os.close(fd)
