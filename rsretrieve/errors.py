"""User-facing errors: the CLI prints their message on one line, never a traceback."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RsRetrieveError(Exception):
    """Base class for problems the user can fix (bad input, missing files, unknown names)."""


class DataError(RsRetrieveError):
    """A dataset, query or qrels file is missing, malformed or inconsistent."""


class ConfigError(RsRetrieveError):
    """A configuration value, option or registered name is invalid."""


class ModelError(RsRetrieveError):
    """An encoder or its weights cannot be loaded."""


class DiskError(RsRetrieveError):
    """The machine, not the data: a full disk, a quota, an I/O error or a file-size limit."""


class BusyError(RsRetrieveError):
    """Another run holds the output (its lock file names it)."""


class RsRetrieveWarning(UserWarning):
    """Something was repaired or left out on the user's behalf; the CLI prints it as a warning line."""


def first_line(exc: BaseException, limit: int | None = 160) -> str:
    """An exception's first line (at most ``limit`` characters), or its type when it says
    nothing: what a one-line error quotes of a library's multi-line message."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def warn(message: str) -> None:
    import warnings

    warnings.warn(message, RsRetrieveWarning, stacklevel=2)


class Terminated(BaseException):
    """SIGTERM (what ``timeout``, slurm and docker send) raised in the main thread, so that
    every ``finally`` runs: locks are released, temporary folders go, saved batches stay for
    the rerun. A BaseException, like KeyboardInterrupt: no ``except Exception`` swallows it."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
