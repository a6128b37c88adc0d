"""Band-adapter heads: adapters that replace the encoder's first layer instead of squeezing the
bands into three.

``patch-embed`` widens an open_clip model's first convolution (``visual.conv1``: a ViT's patch
embedding or a ResNet stem) to every band of the sensor. Each band is scaled to [0, 1] as the
3-channel adapters scale it (Sentinel-2 reflectance / 0.3, the ``rgb`` adapter's scale;
Sentinel-1 dB stretched as ``sar``), clipped, resized with the encoder's own interpolation and
standardised: the bands that stand in for the model's red, green and blue with the model's
own mean and std, the others with mean 0.5 and std 0.25. The RGB kernel goes onto B04, B03,
B02 (S2) or VV, VH (S1, as the ``sar`` composite's first two channels), in the channel order
the model expects (R, G, B). The other bands' kernels start at zero (``init=zero``, as
Llama3-MS-CLIP initialises its extra bands), so that before training the head gives the
``rgb`` adapter's embeddings on the same encoder, or at the mean of the three RGB kernels
(``init=mean``).

A head is an adapter like the others (one registry, one pipeline step): the pipeline binds it
to the encoder once (``bind``), then ``embed`` runs the encoder with the head's convolution in
place of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rsretrieve.adapters.affine import S2_SCALE, SAR_RANGES_DB
from rsretrieve.datasets.sensors import S2_BANDS
from rsretrieve.errors import ConfigError

RGB_STANDINS = {"s2": ("B04", "B03", "B02"), "s1": ("VV", "VH")}
RGB_MAX_REFLECTANCE = 0.3  # the rgb adapter's scale
OTHER_MEAN, OTHER_STD = 0.5, 0.25
INITS = ("zero", "mean")


def _sensor_of(bands: Sequence[str]) -> str:
    if bands and set(bands) <= {"VV", "VH"}:
        return "s1"
    if bands and set(bands) <= set(S2_BANDS):
        return "s2"
    raise ConfigError(f"band adapter 'patch-embed' takes Sentinel-2 or Sentinel-1 bands; this input has {', '.join(bands)}")


class PatchEmbedHead(nn.Module):
    """The encoder's first convolution widened to ``bands``; trainable."""

    replaces_first_layer = True

    def __init__(self, bands: Sequence[str], init: str = "zero") -> None:
        super().__init__()
        if init not in INITS:
            raise ConfigError(f"band adapter 'patch-embed': init must be one of {', '.join(INITS)}, got '{init}'")
        self.bands, self.init = tuple(bands), init
        self.sensor = _sensor_of(self.bands)
        if init == "zero" and not set(RGB_STANDINS[self.sensor]) & set(self.bands):
            raise ConfigError(f"band adapter 'patch-embed' with init=zero starts from the RGB kernel on "
                              f"{', '.join(RGB_STANDINS[self.sensor])}, none of which this input has ({', '.join(self.bands)}); "
                              "use patch-embed:init=mean")
        scale, offset = [], []
        for band in self.bands:
            if self.sensor == "s2":
                scale.append(1.0 / (S2_SCALE * RGB_MAX_REFLECTANCE))
                offset.append(0.0)
            else:
                low, high = SAR_RANGES_DB[band]
                scale.append(1.0 / (high - low))
                offset.append(-low / (high - low))
        self.register_buffer("scale", torch.tensor(scale)[None, :, None, None])
        self.register_buffer("offset", torch.tensor(offset)[None, :, None, None])
        self.conv: nn.Conv2d | None = None

    def bind(self, encoder: Any) -> None:
        """Build the head's first layer from the encoder's own, and its standardisation."""
        model = getattr(encoder, "model", None)
        first = getattr(getattr(model, "visual", None), "conv1", None)
        if not isinstance(first, nn.Conv2d) or first.in_channels != 3:
            raise ConfigError(f"band adapter 'patch-embed' widens an open_clip model's visual.conv1 (a ViT or a ResNet "
                              f"stem); {encoder.spec.label()} has none")
        mean, std = [OTHER_MEAN] * len(self.bands), [OTHER_STD] * len(self.bands)
        for channel, index in self._standins():
            mean[index], std[index] = float(encoder.mean[channel]), float(encoder.std[channel])
        self.conv = self._first_layer(first, encoder)
        device = first.weight.device
        self.register_buffer("mean", torch.tensor(mean, device=device)[None, :, None, None])
        self.register_buffer("std", torch.tensor(std, device=device)[None, :, None, None])
        self.size, self.interpolation = tuple(encoder.image_size), encoder.interpolation

    def _standins(self) -> list[tuple[int, int]]:
        """(the model's RGB channel, the band index standing in for it), for the stand-ins kept."""
        return [(channel, self.bands.index(band)) for channel, band in enumerate(RGB_STANDINS[self.sensor])
                if band in self.bands]  # a stand-in may be left out by --bands

    def _first_layer(self, first: nn.Conv2d, encoder: Any) -> nn.Module:
        """The widened convolution: the RGB kernel on its stand-ins, the other bands by ``init``."""
        conv = nn.Conv2d(len(self.bands), first.out_channels, first.kernel_size, first.stride, first.padding,
                         bias=first.bias is not None).to(first.weight.device)
        with torch.no_grad():
            rgb = first.weight.detach()
            conv.weight.zero_()
            if self.init == "mean":
                conv.weight[:] = rgb.mean(dim=1, keepdim=True)
            for channel, index in self._standins():
                conv.weight[:, index] = rgb[:, channel]
            if first.bias is not None:
                conv.bias.copy_(first.bias)
        return conv

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Stored bands -> the standardised input of the widened first layer."""
        x = (pixels.float() * self.scale + self.offset).clamp(0.0, 1.0)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode=self.interpolation, align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def embed(self, encoder: Any, pixels: torch.Tensor) -> np.ndarray:
        """L2-normalised embeddings of ``pixels`` through the encoder with this head as its first layer."""
        if self.conv is None:
            raise ConfigError(f"band adapter '{type(self).__name__}' was not bound to an encoder")
        visual = encoder.model.visual
        own = visual.conv1
        visual.conv1 = self.conv
        try:
            features = encoder.model.encode_image(self(pixels.to(self.mean.device)))
        finally:
            visual.conv1 = own
        return F.normalize(features.float(), dim=-1).detach().cpu().numpy()


def patch_embed(bands: tuple[str, ...], init: str = "zero") -> PatchEmbedHead:
    return PatchEmbedHead(bands, init)


GENERATED_PATCH = 16  # DOFA's kernel size: its generator's output, resized to the ViT's patch


class WavelengthConv(nn.Module):
    """A ViT's patch embedding whose kernel and bias are generated from the input bands'
    wavelengths (DOFA's dynamic patch embedding). The generator makes DOFA's 16 x 16 kernel
    (its layout, so that DOFA's trained generator fits it); for another patch size the kernel
    is resized bilinearly and scaled by the ratio of the areas, so that it sums alike."""

    def __init__(self, out_channels: int, patch: int, stride: int, micrometres: Sequence[float]) -> None:
        from rsretrieve.encoders.dofa import WavelengthPatchEmbed

        super().__init__()
        self.embed = WavelengthPatchEmbed(out_channels, GENERATED_PATCH)
        self.patch, self.stride = patch, stride
        self.micrometres = tuple(float(w) for w in micrometres)
        self._kernel: tuple[torch.Tensor, torch.Tensor] | None = None  # inference: generated once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.generated(x.device)
        return F.conv2d(x, weight.to(x.dtype), bias.to(x.dtype), stride=self.stride)

    def generated(self, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernel and bias for the bands' wavelengths (generated once while not training)."""
        if torch.is_grad_enabled() or self._kernel is None or self._kernel[0].device != device:
            weight, bias = self.embed.kernel(self.micrometres, device)
            if self.patch != GENERATED_PATCH:
                weight = F.interpolate(weight, size=(self.patch, self.patch), mode="bilinear", align_corners=False)
                weight = weight * (GENERATED_PATCH / self.patch) ** 2
            kernel = (weight, bias)
            # while training the kernel follows the generator; indexing (no grad) reuses it
            self._kernel = None if torch.is_grad_enabled() else kernel
        else:
            kernel = self._kernel
        return kernel


class WavelengthHead(PatchEmbedHead):
    """``wavelength``: a DOFA-style patch embedding in front of an open_clip ViT. The kernel is
    generated from the wavelengths of the bands given (any subset, any order: ``--bands``),
    so one trained head serves every band combination; the bands are scaled and standardised
    as ``patch-embed`` does it. Untrained, the generator is seeded random: train it with
    ``rsretrieve train`` (the encoder frozen) before reading its numbers."""

    def __init__(self, bands: Sequence[str], seed: int | str = 0) -> None:
        super().__init__(bands, init="mean")
        self.seed = int(seed)

    def _first_layer(self, first: nn.Conv2d, encoder: Any) -> nn.Module:
        """The kernel generator at the ViT's patch size, seeded."""
        from rsretrieve.datasets.bands import wavelengths

        if first.kernel_size[0] != first.kernel_size[1] or first.stride != first.kernel_size:
            raise ConfigError(f"band adapter 'wavelength' generates a ViT's square patch embedding; {encoder.spec.label()}'s "
                              f"first layer is a {first.kernel_size} convolution with stride {first.stride} (a ResNet stem?)")
        with torch.random.fork_rng(devices=[]):  # seeded, without moving the caller's generator
            torch.manual_seed(self.seed)
            return WavelengthConv(first.out_channels, first.kernel_size[0], first.stride[0],
                                  wavelengths(self.sensor, self.bands, "dofa")).to(first.weight.device)


def wavelength(bands: tuple[str, ...], seed: int | str = 0) -> WavelengthHead:
    return WavelengthHead(bands, seed)
