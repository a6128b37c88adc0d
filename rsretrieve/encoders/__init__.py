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

DEFAULT_BACKEND = "rsretrieve"
DEFAULT_MODEL = "default"  # the trained model shipped in rsretrieve/weights/default


@dataclass(frozen=True)
class EncoderSpec:
    """What identifies an encoder: backend, architecture, weights source and init seed."""

    backend: str = DEFAULT_BACKEND
    model: str = DEFAULT_MODEL
    pretrained: str | None = None  # tag, local checkpoint path, or None for random init
    seed: int = 0  # only matters for random initialisation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_manifest(cls, encoder: dict[str, Any]) -> "EncoderSpec":
        """The spec part of an index manifest's ``encoder`` record."""
        return cls(encoder["backend"], encoder["model"], encoder["pretrained"], encoder["seed"])

    def label(self) -> str:
        """Human-readable name for messages: backend, model and where the weights come from."""
        if self.backend != "open_clip":
            return f"{self.backend}:{self.model}"
        weights = self.pretrained or f"random init (seed {self.seed})"
        return f"{self.backend}:{self.model} [{weights}]"


class Encoder(Protocol):
    spec: EncoderSpec
    embed_dim: int
    weights_sha256: str
    # True when the model holds its own band adapters (per-sensor towers): encode_images
    # then takes raw sensor bands; False: it takes the 3-channel output of a band adapter.
    adapters_bundled: bool

    def describe(self) -> dict[str, Any]:
        """Spec plus what the manifest records to recognise the same weights later."""

    def encode_images(self, pixels: Any, sensor: str) -> np.ndarray:
        """(N, C, H, W) float32 tensor or array -> (N, D) L2-normalised float32. A torch
        encoder has a ``device`` attribute; one without it is given numpy arrays and is
        never run under autocast."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, D) L2-normalised float32."""


EncoderLoader = Callable[[EncoderSpec], Encoder]
ENCODERS: Registry[EncoderLoader] = Registry("encoder backend", "rsretrieve.encoders")
register_encoder = ENCODERS.register


def check_finite(vectors: np.ndarray, encoder: Any, names: Sequence[str], what: str) -> np.ndarray:
    """``vectors`` when every one is finite. A NaN or inf embedding (weights holding a NaN, a
    layer overflowing in half precision) would be indexed and ranked as if it were a score:
    refuse it, naming the encoder and the first ``what`` (key, caption row, query) it hit."""
    bad = ~np.isfinite(vectors).all(axis=1) if vectors.ndim == 2 else ~np.isfinite(vectors)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        from rsretrieve.errors import ModelError

        raise ModelError(f"{encoder.spec.label()} gave non-finite embeddings for {int(bad.sum())} of {len(vectors)} "
                         f"{what}s of a batch (first: {what} '{names[first]}'); its weights or its arithmetic "
                         "produce NaN or inf, so nothing of this batch was kept")
    return vectors


TORCHLESS_BACKENDS = ("random",)  # encoders that run no torch, and so on no device


def check_device(device: str | None, spec: EncoderSpec | None = None) -> None:
    """``--device`` refused before any model loads when it cannot be honoured: not a torch
    device, CUDA on a machine whose torch sees none (or fewer devices), or a model that runs
    no torch at all."""
    if device is None:
        return
    from rsretrieve.errors import ConfigError

    if spec is not None and spec.backend in TORCHLESS_BACKENDS:
        raise ConfigError(f"--device {device}: {spec.label()} runs without torch, on no device; omit --device")
    import torch

    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device '{device}' is not a torch device (cpu, cuda, cuda:N, mps)") from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"--device {device}: torch sees no CUDA device on this machine; omit --device or give cpu")
        if chosen.index is not None and chosen.index >= count:
            raise ConfigError(f"--device {device}: torch sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS is not available on this machine")


def load_encoder(spec: EncoderSpec, device: str | None = None) -> Encoder:
    from rsretrieve.progress import stage

    check_device(device, spec)
    stage(f"loading encoder {spec.label()}")
    return ENCODERS.get(spec.backend)(spec, device)  # type: ignore[call-arg]


ENCODERS.register_lazy("open_clip", "rsretrieve.encoders.open_clip:OpenClipEncoder")
ENCODERS.register_lazy("rsretrieve", "rsretrieve.encoders.trained:TrainedEncoder")
ENCODERS.register_lazy("transformers", "rsretrieve.encoders.transformers:TransformersEncoder")
ENCODERS.register_lazy("random", "rsretrieve.encoders.random:RandomEncoder")
ENCODERS.register_lazy("closp", "rsretrieve.encoders.closp:ClospEncoder")
ENCODERS.register_lazy("msclip", "rsretrieve.encoders.msclip:MsClipEncoder")
ENCODERS.register_lazy("dofa", "rsretrieve.encoders.dofa:DofaClipEncoder")
ENCODERS.register_lazy("dofa-so400m", "rsretrieve.encoders.dofa:DofaSo400mEncoder")
