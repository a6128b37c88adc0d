"""SatCLIP's location encoder (Klemmer et al. 2023, microsoft/satclip), as GeoCLOSP carries it.

``LocationEncoder`` = spherical harmonics of (lon, lat) followed by a SIREN, with the module
names of SatCLIP and of the GeoCLOSP checkpoints (``nnet.layers.{i}``, ``nnet.last_layer``,
each a raw ``weight`` and ``bias``), so their state dicts load as they are.

Spherical harmonics, as SatCLIP computes them:

- input (lon, lat) in degrees; phi = rad(lon + 180), theta = rad(lat + 90); degrees
  l = 0 .. L-1 and orders m = -l .. l, in that order: L * L features (100 for L = 10);
- ``analytic`` (SatCLIP's default, and the hyperparameter of its pretrained checkpoints such
  as satclip-resnet50-l10) evaluates a table SatCLIP generated with sympy. There, every
  m != 0 term is sqrt(2) N(l,|m|) P(l,|m|)(cos theta) cos(m phi) (or sin(|m| phi) for m < 0)
  with N(l,m) = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!) and P *without* the Condon-Shortley phase
  (sympy's phase cancels against the table's (-1)^m); the m = 0 terms carry
  sqrt((2l+1)/4 * pi), a parenthesis slip for sqrt((2l+1)/(4 pi)), so they are pi times the
  orthonormal value. The weights were trained on exactly these features, so they are kept;
- ``closed-form`` (SatCLIP's recursion) is the orthonormal real basis *with* the
  Condon-Shortley phase: it equals ``analytic`` times (-1)^m for m != 0 and divided by pi
  for m = 0. The two do not agree; a checkpoint must be run with the one it was trained on.

The SIREN: ``num_layers`` hidden layers sin(w0 * (W x + b)), w0 = 30 on the first and 1 on the
others, then a linear last layer (identity activation). Dropout acts in training only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rsretrieve.errors import ModelError
from rsretrieve.registry import unknown_name_error

HARMONICS = ("analytic", "closed-form")
W0_FIRST = 30.0
W0 = 1.0


def legendre_table(x: torch.Tensor, degrees: int) -> dict[tuple[int, int], torch.Tensor]:
    """Associated Legendre P(l, m)(x) for 0 <= m <= l < ``degrees``, without the
    Condon-Shortley phase, by the standard upward recursion in l."""
    table: dict[tuple[int, int], torch.Tensor] = {}
    sine = torch.sqrt(torch.clamp((1 - x) * (1 + x), min=0.0))
    diagonal = torch.ones_like(x)
    for m in range(degrees):
        if m > 0:
            diagonal = diagonal * (2 * m - 1) * sine  # P(m, m) = (2m-1)!! sin^m
        table[(m, m)] = diagonal
        if m + 1 < degrees:
            table[(m + 1, m)] = x * (2 * m + 1) * diagonal
        for l in range(m + 2, degrees):
            table[(l, m)] = ((2 * l - 1) * x * table[(l - 1, m)] - (l + m - 1) * table[(l - 2, m)]) / (l - m)
    return table


def _norm(l: int, m: int) -> float:
    return math.sqrt((2 * l + 1) / (4 * math.pi) * math.factorial(l - m) / math.factorial(l + m))


def spherical_harmonics(lonlat: torch.Tensor, degrees: int, harmonics: str = "analytic") -> torch.Tensor:
    """(N, 2) lon/lat degrees -> (N, degrees**2) real spherical harmonics as SatCLIP computes them."""
    if harmonics not in HARMONICS:
        raise unknown_name_error("spherical harmonics calculation", harmonics, HARMONICS)
    lonlat = lonlat.to(torch.float64)
    phi = torch.deg2rad(lonlat[:, 0] + 180)
    theta = torch.deg2rad(lonlat[:, 1] + 90)
    legendre = legendre_table(torch.cos(theta), degrees)
    features = []
    for l in range(degrees):
        for m in range(-l, l + 1):
            a = abs(m)
            if m == 0:
                scale = math.pi * _norm(l, 0) if harmonics == "analytic" else _norm(l, 0)
                features.append(scale * legendre[(l, 0)])
                continue
            sign = 1.0 if harmonics == "analytic" or a % 2 == 0 else -1.0
            trig = torch.cos(a * phi) if m > 0 else torch.sin(a * phi)
            features.append(sign * math.sqrt(2.0) * _norm(l, a) * legendre[(l, a)] * trig)
    return torch.stack(features, dim=-1)


class Siren(nn.Module):
    """One SIREN layer: ``activation(w0 * (x W^T + b))``, sine or (last layer) identity."""

    def __init__(self, dim_in: int, dim_out: int, w0: float, sine: bool = True) -> None:
        super().__init__()
        bound = 1 / dim_in if w0 == W0_FIRST else math.sqrt(6 / dim_in) / w0  # SIREN's initialisation
        self.weight = nn.Parameter(torch.empty(dim_out, dim_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(dim_out).uniform_(-bound, bound))
        self.w0, self.sine = w0, sine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.linear(x, self.weight, self.bias)
        return torch.sin(self.w0 * out) if self.sine else out


class SirenNet(nn.Module):
    def __init__(self, dim_in: int, dim_hidden: int, dim_out: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            Siren(dim_in if i == 0 else dim_hidden, dim_hidden, W0_FIRST if i == 0 else W0) for i in range(num_layers)
        )
        self.last_layer = Siren(dim_hidden, dim_out, W0, sine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.last_layer(x)


class LocationEncoder(nn.Module):
    """lon/lat -> SatCLIP location embedding (``dim_out`` wide, 256 for the released ones)."""

    def __init__(self, degrees: int, dim_hidden: int, num_layers: int, dim_out: int, harmonics: str = "analytic") -> None:
        super().__init__()
        if harmonics not in HARMONICS:
            raise unknown_name_error("spherical harmonics calculation", harmonics, HARMONICS)
        self.degrees, self.harmonics = degrees, harmonics
        self.nnet = SirenNet(degrees * degrees, dim_hidden, dim_out, num_layers)

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        weight = self.nnet.last_layer.weight
        features = spherical_harmonics(lonlat, self.degrees, self.harmonics)
        return self.nnet(features.to(weight.device, weight.dtype))

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], prefix: str, harmonics: str, where: str) -> "LocationEncoder":
        """The encoder whose sizes the ``prefix``ed keys of a checkpoint give: layers counted,
        degree L from the first layer's L * L inputs."""
        layers = sorted({int(k[len(prefix) + len("nnet.layers."):].split(".")[0])
                         for k in state if k.startswith(prefix + "nnet.layers.")})
        first, last = state.get(f"{prefix}nnet.layers.0.weight"), state.get(f"{prefix}nnet.last_layer.weight")
        if not layers or first is None or last is None or layers != list(range(len(layers))):
            raise ModelError(f"{where}: missing keys {prefix}nnet.layers.0.weight / {prefix}nnet.last_layer.weight "
                             "(not a SatCLIP location encoder)")
        degrees = math.isqrt(int(first.shape[1]))
        if degrees * degrees != first.shape[1]:
            raise ModelError(f"{where}: {prefix}nnet.layers.0.weight takes {first.shape[1]} inputs, not L * L "
                             "spherical harmonics")
        return cls(degrees, int(first.shape[0]), len(layers), int(last.shape[0]), harmonics)


def check_lonlat_array(lonlat: np.ndarray) -> np.ndarray:
    """(N, 2) finite lon/lat degrees within range, or an error."""
    lonlat = np.asarray(lonlat, np.float64)
    if lonlat.ndim != 2 or lonlat.shape[1] != 2 or not np.isfinite(lonlat).all() \
            or (np.abs(lonlat[:, 0]) > 180).any() or (np.abs(lonlat[:, 1]) > 90).any():
        raise ModelError("locations must be (N, 2) lon, lat in degrees (lon -180..180, lat -90..90)")
    return lonlat
