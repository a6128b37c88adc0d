"""Hugging Face transformers backend for dual encoders open_clip cannot load, such as the
SigLIP-style Git-RSCLIP: ``EncoderSpec(backend="transformers", model=HUB_ID_OR_FOLDER)``.

The folder (or hub snapshot) holds config.json, weights, a tokenizer and, optionally,
preprocessor_config.json (image size, mean and std; SigLIP's 0.5/0.5 otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rsretrieve.encoders import EncoderSpec
from rsretrieve.encoders.weights import weights_digest
from rsretrieve.errors import ModelError


def _features(output: Any) -> torch.Tensor:
    """transformers 4 returns a tensor from get_*_features, 5 an output with pooler_output."""
    return output if torch.is_tensor(output) else output.pooler_output


class TransformersEncoder:
    adapters_bundled = False

    def __init__(self, spec: EncoderSpec, device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        self.spec = spec
        source = spec.model
        local = Path(source).expanduser()
        if local.exists() and not (local / "config.json").is_file():
            raise ModelError(f"{local} is not a transformers model folder: config.json not found")
        try:
            self.model = AutoModel.from_pretrained(str(local) if local.exists() else source, revision=spec.pretrained)
            self.tokenizer = AutoTokenizer.from_pretrained(str(local) if local.exists() else source, revision=spec.pretrained)
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot load transformers model '{source}': {str(exc).splitlines()[0][:160]}. Offline, download "
                f"it on a machine with internet (hf download {source} --local-dir DIR) and pass --model DIR"
            ) from exc
        if not hasattr(self.model, "get_image_features") or not hasattr(self.model, "get_text_features"):
            raise ModelError(f"'{source}' ({type(self.model).__name__}) is not an image-text dual encoder")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = self.model.to(self.device).eval()
        try:
            processor = AutoImageProcessor.from_pretrained(str(local) if local.exists() else source)
            mean, std = processor.image_mean, processor.image_std
        except (OSError, ValueError):
            mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        size = self.model.config.vision_config.image_size
        self.image_size = (size, size)
        self.mean = torch.tensor(mean, device=self.device)[None, :, None, None]
        self.std = torch.tensor(std, device=self.device)[None, :, None, None]
        self.max_length = int(getattr(self.model.config.text_config, "max_position_embeddings", 64))
        self.embed_dim = int(self.encode_texts(["x"]).shape[1])
        self.weights_sha256 = weights_digest(self.model)

    def describe(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "weights_sha256": self.weights_sha256, "embed_dim": self.embed_dim,
                "image_size": list(self.image_size), "architecture": type(self.model).__name__}

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, sensor: str | None = None) -> np.ndarray:
        pixels = torch.as_tensor(pixels).to(self.device, torch.float32)
        if tuple(pixels.shape[-2:]) != self.image_size:
            pixels = F.interpolate(pixels, size=self.image_size, mode="bicubic", align_corners=False, antialias=True)
        features = _features(self.model.get_image_features(pixel_values=(pixels - self.mean) / self.std))
        return F.normalize(features.float(), dim=-1).cpu().numpy()

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        # SigLIP was trained on max-length padded text; padding the same way keeps its embeddings.
        tokens = self.tokenizer(list(texts), padding="max_length", max_length=self.max_length,
                                truncation=True, return_tensors="pt").to(self.device)
        tokens.pop("token_type_ids", None)
        features = _features(self.model.get_text_features(**tokens))
        return F.normalize(features.float(), dim=-1).cpu().numpy()
