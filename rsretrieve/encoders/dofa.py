"""DOFA-CLIP (Xiong et al. 2025, earlier GeoLangBind), ViT-B/16: one image encoder for any
sensor and any band subset, its patch embedding generated from the bands' wavelengths.

Layout: torchgeo's ``dofa_clip.py`` (``DOFA_CLIP``), whose module names the published file
``DOFA_CLIP_BASE.pth`` (hub ``xiong-zhitong/DOFA-CLIP``) loads into once the prefixes
``state_dict.``, ``module.`` and ``model.`` are stripped from each key, as torchgeo strips them:

- ``image_encoder``: torchgeo's ``DOFA`` ViT-B/16 as ``DOFA_CLIP`` builds it (12 timm blocks of
  width 768, 12 heads, DOFA's default LayerNorm eps 1e-6 (torchgeo 0.8.1 and later; an older
  DOFA defaulted to 1e-5), a stored sin-cos ``pos_embed``, ``cls_token``, mean of the patch
  tokens then ``fc_norm``). Its ``patch_embed`` makes a kernel and a bias from the C
  wavelengths: a 1-D sin-cos embedding (width 128) of wavelength x 1000 um, a residual MLP
  (``fclayer``), a one-layer transformer over 128 learned weight tokens, the wave tokens and a
  bias token (``weight_generator``) whose (C, 16*16*768) output is read as (C, 16, 16, 768)
  and permuted to (768, C, 16, 16), both outputs x 0.01; stride 16, padding 1.
- ``image_projection``: 768 -> 512, no bias. ``text_encoder``: a 6-layer pre-norm transformer
  (width 512, 8 heads, GELU) over CLIP BPE tokens (context 77), ``ln_final``, the first token
  (the start token) pooled, ``text_projection`` 512 x 512. Both sides L2-normalised.

Input (the authors' training recipe: values scaled to [0, 1], then ``(x - 0.5) / 0.5``):
Sentinel-2 reflectance (value / 10000) of every stored band at DOFA's wavelengths;
Sentinel-1 VV and VH in dB stretched as the ``sar`` adapter does (VV -25..0, VH -32..-5) at
DOFA's convention of 3.75 um; 8-bit RGB / 255 at 0.665, 0.56, 0.49 um. Clipped to [0, 1]. The
120 px patch is resized to 224 bilinearly (kornia's resampling in the authors' training crops).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsretrieve.adapters.affine import S2_SCALE, SAR_RANGES_DB
from rsretrieve.datasets.bands import wavelengths
from rsretrieve.datasets.sensors import BANDS
from rsretrieve.encoders import EncoderSpec
from rsretrieve.encoders.weights import (
    built_for_loading,
    check_keys,
    find_weights_file,
    read_state_dict,
    weights_digest,
)
from rsretrieve.errors import ConfigError, ModelError

WIDTH, DEPTH, HEADS, PATCH, SIZE = 768, 12, 12, 16, 224
WAVE_DIM, WEIGHT_TOKENS, SCALER = 128, 128, 0.01
TEXT_WIDTH, TEXT_LAYERS, TEXT_HEADS, CONTEXT, VOCAB, EMBED = 512, 6, 8, 77, 49408, 512
NORM_EPS = 1e-6  # torchgeo's DOFA default, which DOFA_CLIP keeps
STRIPPED = ("state_dict.", "module.", "model.")  # torchgeo's _convert_state_dict, in its order


def wave_embedding(micrometres: torch.Tensor, width: int = WAVE_DIM) -> torch.Tensor:
    """(C,) wavelengths -> (C, width): sines then cosines of wavelength x 1000 at the
    frequencies 1 / 10000 ** (i / (width / 2))."""
    positions = micrometres.float() * 1000
    frequencies = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float32, device=positions.device) / (width / 2))
    angles = positions[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class FCResLayer(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(width, width)
        self.w2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.w2(F.relu(self.w1(x))))


class WeightGenerator(nn.Module):
    """Wave tokens -> a conv kernel per band and one bias, through a transformer layer that
    also sees learned weight tokens and a bias token (sequence first, post-norm)."""

    def __init__(self, width: int, kernel_values: int, out_channels: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(width, 4, activation="gelu", norm_first=False, batch_first=False, dropout=0.0)
        self.transformer_encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.fc_weight = nn.Linear(width, kernel_values)
        self.fc_bias = nn.Linear(width, out_channels)
        self.weight_tokens = nn.Parameter(torch.randn(WEIGHT_TOKENS, width) * 0.02)
        self.bias_token = nn.Parameter(torch.randn(1, width) * 0.02)

    def forward(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.transformer_encoder(torch.cat([self.weight_tokens, waves, self.bias_token]))
        return self.fc_weight(out[WEIGHT_TOKENS:-1] + waves), self.fc_bias(out[-1])


class WavelengthPatchEmbed(nn.Module):
    """DOFA's dynamic patch embedding: the kernel for C bands is generated from their wavelengths."""

    def __init__(self, out_channels: int = WIDTH, patch: int = PATCH) -> None:
        super().__init__()
        self.out_channels, self.patch = out_channels, patch
        self.weight_generator = WeightGenerator(WAVE_DIM, patch * patch * out_channels, out_channels)
        self.fclayer = FCResLayer(WAVE_DIM)

    def kernel(self, micrometres: Sequence[float], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
        waves = self.fclayer(wave_embedding(torch.tensor(list(micrometres), device=device)))
        weight, bias = self.weight_generator(waves)
        # the generator's (C, k*k*D) output is read as (C, k, k, D), then made (D, C, k, k)
        weight = weight.reshape(len(micrometres), self.patch, self.patch, self.out_channels).permute(3, 0, 1, 2)
        return weight * SCALER, bias.reshape(self.out_channels) * SCALER

    def forward(self, x: torch.Tensor, micrometres: Sequence[float]) -> torch.Tensor:
        if x.shape[1] != len(micrometres):
            raise ConfigError(f"{x.shape[1]} bands given with {len(micrometres)} wavelengths")
        weight, bias = self.kernel(micrometres, x.device)
        return F.conv2d(x, weight, bias, stride=self.patch, padding=1).flatten(2).transpose(1, 2)


class DofaImageEncoder(nn.Module):
    """DOFA ViT-B/16 without a head: wavelength patch embedding, timm blocks, mean pool, fc_norm."""

    def __init__(self) -> None:
        from timm.models.vision_transformer import Block

        super().__init__()
        self.patch_embed = WavelengthPatchEmbed()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.pos_embed = nn.Parameter(torch.zeros(1, (SIZE // PATCH) ** 2 + 1, WIDTH), requires_grad=False)
        norm = partial(nn.LayerNorm, eps=NORM_EPS)
        self.blocks = nn.ModuleList([Block(WIDTH, HEADS, 4.0, qkv_bias=True, norm_layer=norm) for _ in range(DEPTH)])
        self.fc_norm = norm(WIDTH)

    def forward(self, x: torch.Tensor, micrometres: Sequence[float]) -> torch.Tensor:
        tokens = self.patch_embed(x, micrometres) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(len(tokens), -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.fc_norm(x[:, 1:].mean(dim=1))


class DofaTextEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(VOCAB, TEXT_WIDTH)
        self.positional_embedding = nn.Parameter(torch.randn(CONTEXT, TEXT_WIDTH) * 0.01)
        layer = nn.TransformerEncoderLayer(TEXT_WIDTH, TEXT_HEADS, TEXT_WIDTH * 4, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, TEXT_LAYERS, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(TEXT_WIDTH)
        self.text_projection = nn.Parameter(torch.randn(TEXT_WIDTH, EMBED) * 0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.transformer(self.token_embedding(tokens) + self.positional_embedding[None].to(torch.float32))
        return self.ln_final(x)[:, 0] @ self.text_projection


class DofaClip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.image_encoder = DofaImageEncoder()
        self.image_projection = nn.Linear(WIDTH, EMBED, bias=False)
        self.text_encoder = DofaTextEncoder()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))


def build_model(seed: int = 0) -> DofaClip:
    torch.manual_seed(seed)
    return DofaClip()


def read_published(path: Any) -> tuple[str, dict[str, torch.Tensor]]:
    """The file's state dict with torchgeo's prefixes stripped from each key."""
    where = find_weights_file(path)
    state = {}
    for key, tensor in read_state_dict(where).items():
        for prefix in STRIPPED:
            key = key.removeprefix(prefix)
        state[key] = tensor
    return str(where), state


def load_state(path: Any, model: DofaClip) -> str:
    where, state = read_published(path)
    expected = model.state_dict()
    check_keys(where, expected, state)
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ModelError(f"{where}: key {key} has shape {tuple(state[key].shape)}, DOFA-CLIP ViT-B/16 needs {tuple(tensor.shape)}")
    model.load_state_dict(state)
    return where


def model_input(pixels: torch.Tensor, sensor: str, bands: Sequence[str] | None = None) -> tuple[torch.Tensor, list[float]]:
    """Stored pixels of ``sensor`` (``bands``, default all stored) -> the normalised 224 px
    input and the wavelengths DOFA is fed for them."""
    bands = tuple(bands or BANDS[sensor])
    x = pixels.float()
    if sensor == "s2":
        x = x / S2_SCALE
    elif sensor == "s1":
        low = torch.tensor([SAR_RANGES_DB[b][0] for b in bands], device=x.device)
        high = torch.tensor([SAR_RANGES_DB[b][1] for b in bands], device=x.device)
        x = (x - low[None, :, None, None]) / (high - low)[None, :, None, None]
    elif sensor == "rgb":
        x = x / 255.0
    else:
        raise ModelError(f"DOFA-CLIP has no recipe for sensor '{sensor}'")
    x = x.clamp(0.0, 1.0)
    if tuple(x.shape[-2:]) != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return (x - 0.5) / 0.5, wavelengths(sensor, bands, "dofa")


class DofaClipEncoder:
    """Encoder backend ``dofa``: ``EncoderSpec("dofa", "dofa-clip", WEIGHTS_FILE)``; every sensor."""

    adapters_bundled = True  # wavelengths and scaling per sensor are the model's own
    sensors = ("s2", "s1", "rgb")
    band_input = "wavelength"  # --bands: the kept bands, at their wavelengths

    def __init__(self, spec: EncoderSpec, device: str | None = None) -> None:
        from rsretrieve.encoders.open_clip import tokenizer

        self.spec = spec
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with built_for_loading() if spec.pretrained else nullcontext():
            model = build_model(spec.seed)
        self.weights_file = load_state(spec.pretrained, model) if spec.pretrained else None
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer("ViT-B-16")  # CLIP BPE, context 77, start token first
        self.embed_dim = EMBED
        self.weights_sha256 = weights_digest(self.model)

    def describe(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "weights_sha256": self.weights_sha256, "embed_dim": self.embed_dim,
                "image_size": [SIZE, SIZE], "wavelengths_um": {s: wavelengths(s, BANDS[s], "dofa") for s in self.sensors},
                "input": "[0, 1] per sensor (S2 / 10000, S1 dB stretched, RGB / 255), then (x - 0.5) / 0.5"}

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, sensor: str, bands: Sequence[str] | None = None) -> np.ndarray:
        """``pixels`` hold ``bands`` of ``sensor`` (default: all it stores), fed at their wavelengths."""
        x, waves = model_input(torch.as_tensor(pixels).to(self.device), sensor, bands)
        features = self.model.image_projection(self.model.image_encoder(x, waves))
        return F.normalize(features.float(), dim=-1).cpu().numpy()

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.text_encoder(tokens).float(), dim=-1).cpu().numpy()


class DofaSo400mEncoder:
    """Backend ``dofa-so400m``: the authors' larger release (``hf-hub:earthflow/GeoLB-ViT-14-SigLIP-so400m-384-EO``),
    carded so that it is listed with what it needs. Its image tower is the timm model
    ``dofa_vit_so400m_patch14_siglip_384`` of the authors' open_clip fork (SigLIP so400m with a
    wavelength patch embedding, image 384, ``map`` pooling), which neither open_clip nor timm
    ships; rsretrieve does not build it yet."""

    adapters_bundled = True
    sensors = ("s2", "s1", "rgb")

    def __init__(self, spec: EncoderSpec, device: str | None = None) -> None:
        raise ModelError(f"{spec.label()}: DOFA-CLIP so400m needs the timm model dofa_vit_so400m_patch14_siglip_384 of "
                         "the authors' open_clip fork (repository xiong-zhitong/DOFA-CLIP), which rsretrieve does not "
                         "build yet; use dofa-clip (ViT-B/16)")
