"""Backend ``random``: a chance baseline with the encoder interface.

Every image and text gets a Gaussian vector seeded by a hash of its content, so the
ranking is random yet identical on every run, in any batch order, and after a resume.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from rsretrieve.encoders import EncoderSpec

DIM = 64


def _vector(content: bytes | memoryview, seed: int) -> np.ndarray:
    hasher = hashlib.sha256(seed.to_bytes(8, "little"))
    hasher.update(content)  # straight from the pixel buffer: no copy of the image
    digest = hasher.digest()
    vector = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(DIM)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class RandomEncoder:
    adapters_bundled = True  # looks at raw bands; no adapter needed
    embed_dim = DIM

    def __init__(self, spec: EncoderSpec, device: str | None = None) -> None:
        self.spec = spec
        self.weights_sha256 = hashlib.sha256(f"random:{spec.seed}".encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "weights_sha256": self.weights_sha256, "embed_dim": DIM}

    def encode_images(self, pixels: Any, sensor: str) -> np.ndarray:
        array = np.ascontiguousarray(pixels.numpy() if hasattr(pixels, "numpy") else pixels)
        return np.stack([_vector(memoryview(image).cast("B"), self.spec.seed) for image in array])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([_vector(text.encode(), self.spec.seed) for text in texts])
