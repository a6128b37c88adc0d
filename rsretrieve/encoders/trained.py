"""Trained image-text models (CLOSP-style): one image tower per sensor, a frozen text encoder.

A tower is band adapter -> backbone -> linear projection into the text space, so S1 and
S2 samples are ranked together by one query. A model is a folder::

    config.json        format, ModelConfig (towers, text encoder), training record
    model.safetensors  tower weights and the logit scale (no pickle)

The ``rsretrieve`` encoder backend loads such a folder; ``model: default`` is the model
shipped in the package (trained on the embedded sample by scripts/train_default.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsretrieve.adapters import build_adapter
from rsretrieve.config import from_mapping
from rsretrieve.datasets.sensors import BANDS
from rsretrieve.encoders import EncoderSpec
from rsretrieve.encoders.text import TextEncoder, TextSpec, load_text_encoder
from rsretrieve.encoders.weights import weights_digest
from rsretrieve.errors import ConfigError, ModelError
from rsretrieve.io import atomic_dir, read_json, write_json
from rsretrieve.paths import DEFAULT_MODEL_DIR, resolve_model_dir  # noqa: F401 - DEFAULT_MODEL_DIR: part of this module's API
from rsretrieve.registry import unknown_name_error

MODEL_FORMAT = "rsretrieve-model"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
BACKBONES = ("spectral-cnn", "open_clip")


@dataclasses.dataclass(frozen=True)
class TowerConfig:
    """``spectral-cnn`` takes every adapter channel; ``open_clip`` takes 3 (rgb/sar/linear)."""

    adapter: str = "all-bands"
    backbone: str = "spectral-cnn"
    width: int = 64
    model: str | None = None  # open_clip backbone: architecture
    pretrained: str | None = None  # open_clip backbone: tag or checkpoint

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise unknown_name_error("backbone", self.backbone, BACKBONES)

    @classmethod
    def from_option(cls, backbone: str, adapter: str = "all-bands", width: int = 64) -> "TowerConfig":
        """``train --backbone``: ``spectral-cnn``, or ``open_clip:ARCH[:PRETRAINED]``, the form
        ``--text-encoder`` takes, so one option names a backbone and its weights."""
        kind, _, rest = backbone.partition(":")
        model, _, pretrained = rest.partition(":")
        if kind == "open_clip" and not model:
            raise ConfigError("--backbone open_clip needs an architecture: open_clip:ARCH[:PRETRAINED], e.g. open_clip:ViT-B-32")
        if kind != "open_clip" and rest:
            raise ConfigError(f"--backbone {backbone}: only open_clip takes :ARCH[:PRETRAINED]")
        return cls(adapter=adapter, backbone=kind, width=width, model=model or None, pretrained=pretrained or None)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    text: TextSpec
    embed_dim: int
    towers: Mapping[str, TowerConfig]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text.to_dict(),
            "embed_dim": self.embed_dim,
            "towers": {s: dataclasses.asdict(t) for s, t in self.towers.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str) -> "ModelConfig":
        raw = from_mapping(_RawConfig, data, source)
        towers = {s: from_mapping(TowerConfig, t, f"{source}: towers.{s}") for s, t in raw.towers.items()}
        unknown = set(towers) - set(BANDS)
        if unknown:
            raise ConfigError(f"{source}: towers for unknown sensor(s) {', '.join(sorted(unknown))}")
        return cls(from_mapping(TextSpec, raw.text, f"{source}: text"), int(raw.embed_dim), towers)


@dataclasses.dataclass(frozen=True)
class _RawConfig:
    text: dict
    embed_dim: int
    towers: dict


class SpectralCNN(nn.Module):
    """Per-pixel spectral mixing, then two strided 3x3 convolutions, mean+std pooling."""

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, width, 1), nn.GroupNorm(8, width), nn.GELU(), nn.AvgPool2d(2),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.GroupNorm(8, width), nn.GELU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.GroupNorm(8, width), nn.GELU(),
        )
        self.out_dim = 2 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(x).flatten(2)
        return torch.cat([h.mean(-1), h.std(-1)], dim=1)


class OpenClipVisual(nn.Module):
    """An open_clip image tower behind its own resize/normalisation, or, with a ``head``
    (``patch-embed``), with the head's widened convolution as its first layer: the head then
    does the scaling, resizing and standardising, and the tower takes what it gives."""

    def __init__(self, model: str, pretrained: str | None, head: nn.Module | None = None) -> None:
        super().__init__()
        from rsretrieve.encoders.open_clip import OpenClipEncoder

        encoder = OpenClipEncoder(EncoderSpec("open_clip", model, pretrained), device="cpu")
        self.visual = encoder.model.visual
        self._preprocess = encoder.preprocess
        self.out_dim = encoder.embed_dim
        if head is not None:
            head.bind(encoder)
            self.visual.conv1, head.conv = head.conv, None  # one module, held by the tower
            self._preprocess = _identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(self._preprocess(x))

    def last_blocks(self, count: int) -> list[nn.Module]:
        """The last ``count`` blocks of the image tower (ViT resblocks, ResNet layers) and what
        follows them, for ``train --train-blocks``."""
        if count <= 0:
            return []
        blocks = getattr(getattr(self.visual, "transformer", None), "resblocks", None)
        if blocks is None:
            blocks = [getattr(self.visual, f"layer{i}") for i in range(1, 5) if hasattr(self.visual, f"layer{i}")]
        if count > len(blocks):
            raise ConfigError(f"--train-blocks {count}: this image tower has {len(blocks)} blocks")
        after = [m for m in (getattr(self.visual, "ln_post", None), getattr(self.visual, "attnpool", None)) if m is not None]
        return [*list(blocks)[-count:], *after]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class Tower(nn.Module):
    def __init__(self, sensor: str, config: TowerConfig, embed_dim: int) -> None:
        super().__init__()
        self.adapter = build_adapter(config.adapter, BANDS[sensor])
        channels = getattr(self.adapter, "out_channels", 3)
        if getattr(self.adapter, "replaces_first_layer", False):
            if config.backbone != "open_clip" or not config.model:
                raise ConfigError(f"band adapter '{config.adapter}' is a head: it widens an open_clip image tower's first "
                                  "layer; give --backbone open_clip:ARCH[:PRETRAINED]")
            self.backbone = OpenClipVisual(config.model, config.pretrained, head=self.adapter)
        elif config.backbone == "spectral-cnn":
            self.backbone: nn.Module = SpectralCNN(channels, config.width)
        else:
            if channels != 3 or not config.model:
                raise ConfigError("an open_clip backbone needs a 3-channel adapter and a model name")
            self.backbone = OpenClipVisual(config.model, config.pretrained)
        self.projection = nn.Linear(self.backbone.out_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.backbone(self.adapter(x))).float(), dim=-1)


class DualEncoder(nn.Module):
    """Image towers per sensor and the CLIP logit scale; the text encoder stays outside."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.towers = nn.ModuleDict({s: Tower(s, t, config.embed_dim) for s, t in config.towers.items()})
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, images: torch.Tensor, sensor: str) -> torch.Tensor:
        if sensor not in self.towers:
            raise ConfigError(
                f"this model's image towers take {', '.join(self.towers)} bands, not {sensor} images. Which encoders "
                "describe which images: trained models and CLOSP their sensors' bands (s1, s2); open_clip and "
                "transformers models any sensor through a band adapter (rgb for RGB images). Build the caption index "
                "with such a model (--model) to describe RGB images"
            )
        return self.towers[sensor](images)


def save_model(
    model: DualEncoder,
    folder: Path,
    record: Mapping[str, Any],
    extra: Callable[[Path], None] | None = None,
) -> None:
    """Write config.json + model.safetensors (+ ``extra(tmp)`` files) atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    with atomic_dir(folder, replace=True, what="a model folder of rsretrieve train") as tmp:
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        write_json(tmp / CONFIG_FILE, {"format": MODEL_FORMAT, "config": model.config.to_dict(), "training": dict(record)})
        if extra is not None:
            extra(tmp)


def read_model_config(folder: Path) -> tuple[ModelConfig, dict[str, Any]]:
    path = Path(folder) / CONFIG_FILE
    data = read_json(path, ModelError, "an rsretrieve model folder")
    if data.get("format") != MODEL_FORMAT:
        raise ModelError(f"{path}: field 'format' is not {MODEL_FORMAT!r}")
    return ModelConfig.from_dict(data.get("config", {}), str(path)), data.get("training", {})


def load_model(folder: Path) -> DualEncoder:
    """Build the architecture from config.json and load weights from safetensors only."""
    from safetensors.torch import load_file

    config, _ = read_model_config(folder)
    model = DualEncoder(config)
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{weights} not found")
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except (RuntimeError, OSError) as exc:
        raise ModelError(f"{weights}: weights do not fit {folder / CONFIG_FILE}: {str(exc).splitlines()[0]}") from exc
    return model.eval()


class TrainedEncoder:
    """Encoder backend ``rsretrieve``: ``EncoderSpec(backend="rsretrieve", model=FOLDER|default)``."""

    adapters_bundled = True

    def __init__(self, spec: EncoderSpec, device: str | None = None) -> None:
        self.spec = spec
        self.folder = resolve_model_dir(spec.model)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_model(self.folder).to(self.device)
        self.embed_dim = self.model.config.embed_dim
        self._text_device = device

    @cached_property
    def text(self) -> TextEncoder:
        encoder = load_text_encoder(self.model.config.text, self._text_device)
        if encoder.dim != self.embed_dim:
            raise ModelError(f"text encoder gives {encoder.dim}-d vectors, the model expects {self.embed_dim}")
        return encoder

    @cached_property
    def weights_sha256(self) -> str:
        return weights_digest(self.model)

    def describe(self) -> dict[str, Any]:
        return {
            **self.spec.to_dict(),
            "folder": str(self.folder),
            "weights_sha256": self.weights_sha256,
            "embed_dim": self.embed_dim,
            "text": self.model.config.text.to_dict(),
            "towers": {s: dataclasses.asdict(t) for s, t in self.model.config.towers.items()},
        }

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, sensor: str) -> np.ndarray:
        return self.model(torch.as_tensor(pixels).to(self.device, torch.float32), sensor).float().cpu().numpy()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.text.encode(texts)
