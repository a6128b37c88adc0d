"""Saying what a long step is doing, from deep in the library, without a callback threaded
through every signature.

The CLI installs a reporter for the length of a command (``reporting``); library code calls
``stage`` when a step of more than about two seconds starts (loading an encoder, embedding
queries, scoring) and ``bar`` around a counted loop. Without a reporter (tests, library use)
both do nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reporter:
    say: Callable[[str], None]
    bar: Callable[[str, int | None], AbstractContextManager[Any]]  # label, total -> advance(n) (with .start(total))


_REPORTER: ContextVar[Reporter | None] = ContextVar("rsretrieve_reporter", default=None)


@contextmanager
def reporting(reporter: Reporter) -> Iterator[None]:
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def stage(message: str) -> None:
    """A step that takes a while starts."""
    reporter = _REPORTER.get()
    if reporter is not None:
        reporter.say(message)


class _Silent:
    def __call__(self, n: int) -> None:
        """Nothing reports."""

    def start(self, total: int) -> None:
        """Nothing reports."""


def bar(label: str, total: int | None = None) -> AbstractContextManager[Any]:
    """A progress bar in a terminal, plain lines elsewhere; advance it by calling it with n."""
    reporter = _REPORTER.get()
    return nullcontext(_Silent()) if reporter is None else reporter.bar(label, total)
