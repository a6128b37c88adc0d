"""Band adapters: map a sensor's B bands to the 3-channel [0, 1] image an encoder takes.

Adapters are registered by name. Add your own without editing rsretrieve::

    from rsretrieve.adapters import register_adapter

    @register_adapter("ndvi-gray")
    def ndvi_gray(bands, **params):
        return MyModule(bands)  # a torch.nn.Module: (N, B, H, W) -> (N, 3, H, W)

or declare an entry point in the group ``rsretrieve.adapters``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rsretrieve.errors import ConfigError
from rsretrieve.registry import Registry

AdapterFactory = Callable[..., Any]  # (bands, **params) -> torch.nn.Module
ADAPTERS: Registry[AdapterFactory] = Registry("band adapter", "rsretrieve.adapters")
register_adapter = ADAPTERS.register


def build_adapter(name: str, bands: Sequence[str], **params: Any) -> Any:
    """Instantiate adapter ``name`` for an input with ``bands``."""
    factory = ADAPTERS.get(name)
    try:
        return factory(tuple(bands), **params)
    except TypeError as exc:
        raise ConfigError(f"band adapter '{name}': bad parameters {params}: {exc}") from exc


_BUILT_IN = (("rgb", "rgb"), ("false-color", "false_color"), ("sar", "sar"), ("linear", "linear"), ("all-bands", "all_bands"))
for _name, _attr in _BUILT_IN:
    ADAPTERS.register_lazy(_name, f"rsretrieve.adapters.affine:{_attr}")
