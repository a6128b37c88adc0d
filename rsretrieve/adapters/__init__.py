"""Band adapters: map a sensor's B bands to the 3-channel [0, 1] image an encoder takes, or,
as heads (``patch-embed``), replace the encoder's first layer with one that takes every band.

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


def parse_adapter(text: str) -> tuple[str, dict[str, str]]:
    """``NAME`` or ``NAME:key=value,key=value`` (``patch-embed:init=mean``) -> name and parameters."""
    name, _, rest = text.partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"band adapter '{text}': parameters are key=value, separated by commas (e.g. patch-embed:init=mean)")
        params[key.strip()] = value.strip()
    return name.strip(), params


def build_adapter(name: str, bands: Sequence[str], **params: Any) -> Any:
    """Instantiate adapter ``name`` (``NAME:key=value``) for an input with ``bands``."""
    name, given = parse_adapter(name)
    params = {**given, **params}
    factory = ADAPTERS.get(name)
    try:
        return factory(tuple(bands), **params)
    except TypeError as exc:
        raise ConfigError(f"band adapter '{name}': bad parameters {params}: {exc}") from exc


_BUILT_IN = (("rgb", "rgb"), ("false-color", "false_color"), ("sar", "sar"), ("linear", "linear"), ("all-bands", "all_bands"))
for _name, _attr in _BUILT_IN:
    ADAPTERS.register_lazy(_name, f"rsretrieve.adapters.affine:{_attr}")
ADAPTERS.register_lazy("patch-embed", "rsretrieve.adapters.heads:patch_embed")
ADAPTERS.register_lazy("wavelength", "rsretrieve.adapters.heads:wavelength")
