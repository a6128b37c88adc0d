"""Image-text encoders, registered by backend name (``open_clip`` built in).

A backend is a callable ``load(spec: EncoderSpec) -> Encoder``; add one with
``register_encoder("name")`` or the entry-point group ``rsretrieve.encoders``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from rsretrieve.registry import Registry

DEFAULT_MODEL = "rsretrieve-tiny"


@dataclass(frozen=True)
class EncoderSpec:
    """What identifies an encoder: backend, architecture, weights source and init seed."""

    backend: str = "open_clip"
    model: str = DEFAULT_MODEL
    pretrained: str | None = None  # tag, local checkpoint path, or None for random init
    seed: int = 0  # only matters for random initialisation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Encoder(Protocol):
    spec: EncoderSpec
    embed_dim: int
    weights_sha256: str

    def describe(self) -> dict[str, Any]:
        """Spec plus what the manifest records to recognise the same weights later."""

    def encode_images(self, pixels: Any) -> np.ndarray:
        """(N, 3, H, W) float tensor in [0, 1] -> (N, D) L2-normalised float32."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, D) L2-normalised float32."""


EncoderLoader = Callable[[EncoderSpec], Encoder]
ENCODERS: Registry[EncoderLoader] = Registry("encoder backend", "rsretrieve.encoders")
register_encoder = ENCODERS.register


def load_encoder(spec: EncoderSpec, device: str | None = None) -> Encoder:
    return ENCODERS.get(spec.backend)(spec, device)  # type: ignore[call-arg]


ENCODERS.register_lazy("open_clip", "rsretrieve.encoders.open_clip:OpenClipEncoder")
