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
from rsretrieve.errors import ModelError, first_line
from rsretrieve.io import read_json


def _features(output: Any) -> torch.Tensor:
    """transformers 4 returns a tensor from get_*_features, 5 an output with pooler_output."""
    return output if torch.is_tensor(output) else output.pooler_output


CODE_FIELDS = ("auto_map",)  # config fields that make transformers import the folder's own Python files
CONFIG_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")


def check_model_folder(folder: Path) -> None:
    """Refuse, in one line and before transformers reads anything, a folder that is not a
    transformers model or that asks to run its own code (``auto_map``): rsretrieve never runs
    code from a model folder and never asks whether it may."""
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder} is not a transformers model folder: config.json not found")
    for name in CONFIG_FILES:
        path = folder / name
        if not path.is_file():
            continue
        data = read_json(path, ModelError, "a transformers model folder")
        if not isinstance(data, dict):
            raise ModelError(f"{path}: not a JSON object")
        for field in CODE_FIELDS:
            if field in data:
                raise ModelError(f"{path}: field '{field}' asks to run the folder's own Python code "
                                 f"({', '.join(sorted(map(str, data[field])))[:120] if isinstance(data[field], dict) else data[field]}); "
                                 "rsretrieve never runs code from a model folder")


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
        if local.exists():
            check_model_folder(local)
        where = str(local) if local.exists() else source
        try:  # trust_remote_code=False: transformers refuses a folder's own code instead of asking
            self.model = AutoModel.from_pretrained(where, revision=spec.pretrained, trust_remote_code=False)
            self.tokenizer = AutoTokenizer.from_pretrained(where, revision=spec.pretrained, trust_remote_code=False)
        except (OSError, ValueError) as exc:
            first = first_line(exc)
            if local.exists():
                raise ModelError(f"cannot load the transformers model folder {local}: {first}") from None
            raise ModelError(
                f"cannot load transformers model '{source}': {first}. Offline, download "
                f"it on a machine with internet (hf download {source} --local-dir DIR) and pass --model DIR"
            ) from None
        except Exception as exc:  # noqa: BLE001 - torch's refusal to unpickle code comes as many types
            first = first_line(exc)
            raise ModelError(f"{where}: its weights cannot be read without unpickling code ({first}); rsretrieve "
                             "never runs code from a model folder. Use its model.safetensors") from None
        if not hasattr(self.model, "get_image_features") or not hasattr(self.model, "get_text_features"):
            raise ModelError(f"'{source}' ({type(self.model).__name__}) is not an image-text dual encoder")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = self.model.to(self.device).eval()
        try:
            processor = AutoImageProcessor.from_pretrained(where, trust_remote_code=False)
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
