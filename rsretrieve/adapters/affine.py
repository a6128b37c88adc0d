"""Built-in adapters. Each is an affine per-pixel map (a 1x1 convolution) of the bands.

- ``rgb``: Sentinel-2 true colour (B04, B03, B02): reflectance = value / 10000, then
  divided by ``max_reflectance`` (0.3) and clipped to [0, 1]; 8-bit RGB input (bands
  R, G, B, e.g. Git-10M images) is divided by 255.
- ``false-color``: (B08, B04, B03), same scaling with ``max_reflectance`` 0.4.
- ``sar``: Sentinel-1 composite (VV, VH, VV - VH) in dB, each channel stretched from a
  fixed dB range (VV -25..0, VH -32..-5, VV-VH 0..15) to [0, 1] and clipped. Pass
  ``db=False`` when the stored values are linear power; they are converted to dB first.
- ``linear``: a learnable 1x1 convolution from B bands to 3, initialised to ``rgb`` for
  Sentinel-2 input and to ``sar`` for Sentinel-1 input (without clipping, so it trains).
- ``all-bands``: keeps every band, scaled to order one for encoders that take them all
  (multispectral towers): Sentinel-2 value / 10000, Sentinel-1 (dB + 15) / 10.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rsretrieve.datasets.sensors import S2_BANDS
from rsretrieve.errors import ConfigError

S2_SCALE = 10000.0
SAR_RANGES_DB = {"VV": (-25.0, 0.0), "VH": (-32.0, -5.0), "VV-VH": (0.0, 15.0)}


class AffineAdapter(nn.Module):
    """out[c] = sum_b weight[c, b] * f(x[b]) + bias[c], optionally clipped to [0, 1]."""

    out_channels: int

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        clip: bool,
        to_db: bool = False,
        trainable: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.float().clone(), requires_grad=trainable)
        self.bias = nn.Parameter(bias.float().clone(), requires_grad=trainable)
        self.clip = clip
        self.to_db = to_db
        self.out_channels = int(weight.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.to_db:
            x = 10.0 * torch.log10(x.clamp_min(1e-10))
        n, _, h, w = x.shape  # a 1x1 convolution, as one matmul (faster than conv2d on CPU)
        out = (self.weight @ x.reshape(n, x.shape[1], h * w)).view(n, -1, h, w) + self.bias[None, :, None, None]
        return out.clamp_(0.0, 1.0) if self.clip else out


def _indices(name: str, bands: Sequence[str], wanted: Sequence[str]) -> list[int]:
    missing = [b for b in wanted if b not in bands]
    if missing:
        raise ConfigError(
            f"band adapter '{name}' needs bands {', '.join(wanted)}; "
            f"this input has {', '.join(bands)}"
        )
    return [list(bands).index(b) for b in wanted]


def _selection(name: str, bands: Sequence[str], wanted: Sequence[str], max_reflectance: float):
    if max_reflectance <= 0:
        raise ConfigError(f"band adapter '{name}': max_reflectance must be > 0")
    weight = torch.zeros(3, len(bands))
    for channel, index in enumerate(_indices(name, bands, wanted)):
        weight[channel, index] = 1.0 / (S2_SCALE * max_reflectance)
    return weight, torch.zeros(3)


def _sar(bands: Sequence[str]):
    vv, vh = _indices("sar", bands, ("VV", "VH"))
    weight, bias = torch.zeros(3, len(bands)), torch.zeros(3)
    rows = {"VV": {vv: 1.0}, "VH": {vh: 1.0}, "VV-VH": {vv: 1.0, vh: -1.0}}
    for channel, (name, (low, high)) in enumerate(SAR_RANGES_DB.items()):
        for index, sign in rows[name].items():
            weight[channel, index] = sign / (high - low)
        bias[channel] = -low / (high - low)
    return weight, bias


def rgb(bands: tuple[str, ...], max_reflectance: float = 0.3) -> AffineAdapter:
    if tuple(bands) == ("R", "G", "B"):  # 8-bit RGB images: value / 255
        return AffineAdapter(torch.eye(3) / 255.0, torch.zeros(3), clip=True)
    return AffineAdapter(*_selection("rgb", bands, ("B04", "B03", "B02"), max_reflectance), clip=True)


def false_color(bands: tuple[str, ...], max_reflectance: float = 0.4) -> AffineAdapter:
    wanted = ("B08", "B04", "B03")
    return AffineAdapter(*_selection("false-color", bands, wanted, max_reflectance), clip=True)


def sar(bands: tuple[str, ...], db: bool = True) -> AffineAdapter:
    return AffineAdapter(*_sar(bands), clip=True, to_db=not db)


def linear(bands: tuple[str, ...]) -> AffineAdapter:
    if {"VV", "VH"} <= set(bands):
        weight, bias = _sar(bands)
    elif {"B04", "B03", "B02"} <= set(bands):
        weight, bias = _selection("linear", bands, ("B04", "B03", "B02"), 0.3)
    else:
        raise ConfigError(
            f"band adapter 'linear' is initialised from the rgb or sar selection; "
            f"this input has {', '.join(bands)}"
        )
    return AffineAdapter(weight, bias, clip=False, trainable=True)


def all_bands(bands: tuple[str, ...]) -> AffineAdapter:
    if set(bands) <= {"VV", "VH"}:
        scale, bias = 1 / 10, 1.5
    elif set(bands) <= set(S2_BANDS):
        scale, bias = 1 / S2_SCALE, 0.0
    else:
        raise ConfigError(f"band adapter 'all-bands' knows Sentinel-1 and Sentinel-2 bands; this input has {', '.join(bands)}")
    return AffineAdapter(torch.eye(len(bands)) * scale, torch.full((len(bands),), bias), clip=False)
