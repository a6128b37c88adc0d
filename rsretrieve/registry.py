"""Name -> factory registries with "did you mean" errors and entry-point plugins."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from importlib import import_module
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from rsretrieve.errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean 'x'?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name_error(kind: str, name: str, choices: Iterable[str]) -> ConfigError:
    """Build the error every registry and config reader raises for a misspelt name."""
    choices = sorted(choices)
    return ConfigError(
        f"unknown {kind} '{name}'.{did_you_mean(name, choices)} Known: {', '.join(choices) or 'none'}."
    )


class Registry(Generic[T]):
    """Named factories, filled by decorators and, lazily, by an entry-point group.

    Third-party packages add entries without editing rsretrieve, either by calling
    ``register`` at import time or by declaring ``[project.entry-points."<group>"]``.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._group = entry_point_group
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, str] = {}
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str, *, overwrite: bool = False) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``."""

        def decorate(obj: T) -> T:
            if name in self._entries and not overwrite:
                raise ConfigError(f"{self.kind} '{name}' is already registered")
            self._entries[name] = obj
            return obj

        return decorate

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``"package.module:attr"``, imported on first use (keeps start-up light)."""
        self._lazy[name] = target

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self._group or ""):
            if ep.name not in self._entries:
                self._entries[ep.name] = ep.load()

    def get(self, name: str) -> T:
        if name in self._lazy:
            module, _, attr = self._lazy.pop(name).partition(":")
            self._entries.setdefault(name, getattr(import_module(module), attr))
        if name not in self._entries:
            self._load_plugins()
        if name not in self._entries:
            error = unknown_name_error(self.kind, name, self.names())
            if self._group and not did_you_mean(name, self.names()):
                error = ConfigError(f"{error} A {self.kind} of another package is found once that package is installed "
                                    f"(pip install -e PATH) and declares it in the entry-point group '{self._group}', "
                                    "or once the module that registers it is imported")
            raise error
        return self._entries[name]

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted({*self._entries, *self._lazy})

    def __contains__(self, name: object) -> bool:
        return name in self.names()
