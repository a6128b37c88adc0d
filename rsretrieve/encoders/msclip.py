"""Llama3-MS-CLIP (IBM/ESA, 2025): open_clip's ViT-B-16 whose patch embedding takes 10
Sentinel-2 bands, run as its authors run it (``IBM/MS-CLIP``).

- Weights: the authors' Lightning module ``CLIPDualEncoderModel`` saved as a state dict
  (hub ``ibm-esa-geospatial/Llama3-MS-CLIP-base``, ``Llama3_MS_CLIP_weights.pt``): the open_clip
  model under ``clip_base_model.model.``, ``visual.conv1.weight`` of shape (768, 10, 16, 16),
  and the loss's ``temperature``. The module also reaches the same model as
  ``image_encoder.model.`` and ``text_encoder.model.``; where a file holds those copies they
  must equal the main ones.
- Bands: the 12 stored Sentinel-2 bands without B01 and B09 (B02 B03 B04 B05 B06 B07 B08 B8A
  B11 B12), as digital numbers (reflectance x 10000). The authors' ``extend_weights`` put the
  RGB kernel in channels 0..2 in B, G, R order: B02, B03, B04 are those channels.
- Preprocessing (their ``get_preprocess`` for multispectral input): float32, no scaling,
  ``Resize(224, bicubic)`` as torchvision does it on tensors (antialiased, PIL's cubic
  kernel), ``CenterCrop(224)``, ``Normalize(mean - 1000, std)`` with their band statistics.
- Text: open_clip's ViT-B-16 tokenizer and text tower, unchanged; cosine scoring.

It is a Sentinel-2 model: indexing Sentinel-1 patches with it is refused before it loads.
The model was trained on L2A (surface reflectance); CrisisLandMark stores L1C (top of
atmosphere) bands, a domain shift to keep in mind when reading its numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsretrieve.datasets.sensors import S2_BANDS
from rsretrieve.encoders import EncoderSpec
from rsretrieve.encoders.weights import (
    built_for_loading,
    check_keys,
    find_weights_file,
    read_state_dict,
    weights_digest,
)
from rsretrieve.errors import ModelError

ARCHITECTURE = "ViT-B-16"
BANDS = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
MEAN = (1925.161, 2183.128, 2338.041, 2667.254, 3233.633, 3460.96, 3555.569, 3619.542, 3406.497, 2841.645)
STD = (1205.586, 1223.713, 1399.638, 1403.298, 1378.513, 1434.924, 1491.141, 1454.089, 1473.248, 1365.08)
MEAN_SHIFT = 1000.0  # their Normalize takes mean - 1000
SIZE = 224
PREFIX = "clip_base_model.model."
ALIASES = ("image_encoder.model.", "text_encoder.model.")  # the same modules, reached twice
EXTRA_KEYS = ("temperature",)


def widen_patch_embedding(model: nn.Module, channels: int) -> None:
    """Replace ``visual.conv1`` by a ``channels``-band convolution as the authors' factory
    does: RGB kernel into channels 0..2 in B, G, R order, zeros elsewhere."""
    old = model.visual.conv1
    new = nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride, bias=old.bias is not None)
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, :3] = old.weight.flip(1)
    model.visual.conv1 = new


def build_model(seed: int = 0) -> nn.Module:
    """The open_clip ViT-B-16 with its 10-band patch embedding (random weights from ``seed``)."""
    import logging

    from rsretrieve.encoders.open_clip import _open_clip

    torch.manual_seed(seed)
    logging.disable(logging.WARNING)  # open_clip warns that weights are random: they are replaced or asked for
    try:
        model = _open_clip().create_model(ARCHITECTURE, pretrained=None)
    finally:
        logging.disable(logging.NOTSET)
    widen_patch_embedding(model, len(BANDS))
    return model


def read_state(path: Any) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The authors' file -> (where, the open_clip state dict inside it, the whole file), its
    layout and patch embedding checked before any model is built."""
    where = find_weights_file(path)
    state = read_state_dict(where)
    inner = {k[len(PREFIX):]: v for k, v in state.items() if k.startswith(PREFIX)}
    if not inner:
        raise ModelError(f"{where}: no key starts with '{PREFIX}' (not a Llama3-MS-CLIP state dict)")
    for alias in ALIASES:
        for key, tensor in state.items():
            if key.startswith(alias):
                main = inner.get(key[len(alias):])
                if main is None or main.shape != tensor.shape or not torch.equal(main, tensor):
                    raise ModelError(f"{where}: {key} differs from {PREFIX}{key[len(alias):]} (they are one module)")
    conv = inner.get("visual.conv1.weight")
    if conv is not None and (conv.ndim != 4 or conv.shape[1] != len(BANDS)):
        raise ModelError(f"{where}: visual.conv1.weight has shape {tuple(conv.shape)}; Llama3-MS-CLIP takes "
                         f"{len(BANDS)} bands ({', '.join(BANDS)})")
    return where, inner, state


def load_state(read: tuple[Path, dict[str, Any], dict[str, Any]], model: nn.Module) -> dict[str, Any]:
    """``read_state``'s state dict into ``model``, checked key by key against it; also what
    else the file held (``temperature``)."""
    where, inner, state = read
    other = sorted(k for k in state if not k.startswith((PREFIX, *ALIASES)) and k not in EXTRA_KEYS)
    expected = model.state_dict()
    check_keys(where, [PREFIX + k for k in expected], [PREFIX + k for k in inner] + other)
    for key, tensor in expected.items():
        if inner[key].shape != tensor.shape:
            raise ModelError(f"{where}: key {PREFIX}{key} has shape {tuple(inner[key].shape)}, "
                             f"{ARCHITECTURE} needs {tuple(tensor.shape)}")
    model.load_state_dict(inner)
    temperature = state.get("temperature")
    return {"file": str(where), "temperature": None if temperature is None else float(temperature)}


def preprocess(pixels: torch.Tensor, bands: Sequence[str] = S2_BANDS) -> torch.Tensor:
    """(N, B, H, W) Sentinel-2 ``bands`` -> the normalised (N, 10, 224, 224) model input. A
    model band missing from ``bands`` (``--bands``) is filled with its mean, which is zero
    after standardisation (the authors' ``AddMeanChannels``, fill ``channel_mean``)."""
    from torchvision.transforms.v2 import functional as TF

    n, _, h, w = pixels.shape
    columns = []
    for band, mean in zip(BANDS, MEAN):
        if band in bands:
            columns.append(pixels[:, list(bands).index(band)].float())
        else:
            columns.append(torch.full((n, h, w), mean - MEAN_SHIFT, dtype=torch.float32, device=pixels.device))
    x = torch.stack(columns, dim=1)
    x = TF.resize(x, [SIZE], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    x = TF.center_crop(x, [SIZE])
    mean = torch.tensor(MEAN, device=x.device) - MEAN_SHIFT
    std = torch.tensor(STD, device=x.device)
    return (x - mean[None, :, None, None]) / std[None, :, None, None]


class MsClipEncoder:
    """Encoder backend ``msclip``: ``EncoderSpec("msclip", "llama3-ms-clip", WEIGHTS_FILE)``."""

    adapters_bundled = True  # its own band selection and normalisation
    sensors = ("s2",)
    band_input = "fixed"  # --bands: the model's other bands are filled (zero after standardisation)
    model_bands = {"s2": BANDS}

    def __init__(self, spec: EncoderSpec, device: str | None = None) -> None:
        from rsretrieve.encoders.open_clip import tokenizer

        self.spec = spec
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        read = read_state(spec.pretrained) if spec.pretrained else None  # a wrong file fails before the build
        with built_for_loading() if read else nullcontext():
            model = build_model(spec.seed)
        self.loaded = load_state(read, model) if read else {"file": None, "temperature": None}
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer(ARCHITECTURE)
        self.embed_dim = int(self.model.text_projection.shape[1])
        self.weights_sha256 = weights_digest(self.model)

    def describe(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "weights_sha256": self.weights_sha256, "embed_dim": self.embed_dim,
                "architecture": ARCHITECTURE, "bands": list(BANDS), "image_size": [SIZE, SIZE],
                "mean": [m - MEAN_SHIFT for m in MEAN], "std": list(STD), "temperature": self.loaded["temperature"]}

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, sensor: str | None = None, bands: Sequence[str] | None = None) -> np.ndarray:
        if sensor not in (None, "s2"):
            raise ModelError(f"Llama3-MS-CLIP takes Sentinel-2 bands, not {sensor}; index with --sensor s2")
        x = preprocess(torch.as_tensor(pixels).to(self.device), bands or S2_BANDS)
        return F.normalize(self.model.encode_image(x).float(), dim=-1).cpu().numpy()

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu().numpy()
