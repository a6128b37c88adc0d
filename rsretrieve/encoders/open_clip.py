"""open_clip backend: any architecture with a pretrained tag, a local checkpoint,
an ``hf-hub:`` id (when online) or random weights from a seed."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rsretrieve.encoders import EncoderSpec
from rsretrieve.encoders.weights import built_for_loading, unpacked, weights_digest
from rsretrieve.errors import ConfigError, ModelError, first_line
from rsretrieve.registry import unknown_name_error

CONFIG_DIR = Path(__file__).parent / "model_configs"
RANDOM = {None, "", "none", "random"}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


@cache
def _open_clip() -> Any:
    """Import open_clip once and add the package's own model configs to its registry."""
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    return open_clip


@cache
def tokenizer(model: str) -> Any:
    """open_clip's tokenizer for ``model``, built once a process: reading the BPE vocabulary
    takes a tenth of a second, paid again for every encoder a leaderboard or a test loads."""
    return _open_clip().get_tokenizer(model)


def list_models() -> list[str]:
    return list(_open_clip().list_models())


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.endswith(CHECKPOINT_SUFFIXES) or value.startswith(".")


def _create(spec: EncoderSpec) -> torch.nn.Module:
    oc = _open_clip()
    model, pretrained = spec.model, spec.pretrained
    if model.startswith("hf-hub:"):
        try:
            return oc.create_model(model)
        except Exception as exc:  # noqa: BLE001 - hub and parsing errors alike
            raise ModelError(
                f"cannot load {model}: {str(exc).splitlines()[0]}. Offline, download the repo "
                f"on a machine with internet (hf download {model[7:]}) and pass "
                "--model ARCH --pretrained /path/to/open_clip_pytorch_model.bin"
            ) from exc
    if model not in oc.list_models():
        raise unknown_name_error("open_clip model", model, oc.list_models())
    if pretrained in RANDOM:
        torch.manual_seed(spec.seed)
        logging.disable(logging.WARNING)  # open_clip warns that weights are random: we asked for that
        try:
            return oc.create_model(model, pretrained=None)
        finally:
            logging.disable(logging.NOTSET)
    if _looks_like_path(str(pretrained)) or Path(str(pretrained)).is_file():
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise ModelError(f"checkpoint file {path} not found (--pretrained)")
        try:
            with unpacked(path) as file, built_for_loading():  # open_clip then loads the file strictly
                return oc.create_model(model, pretrained=str(file), weights_only=True)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds for bad files
            first = first_line(exc, 300)
            raise ModelError(
                f"cannot load checkpoint {path} into {model} with weights_only=True: {first}. rsretrieve never "
                "unpickles code: give a plain state dict, an open_clip training checkpoint or safetensors"
            ) from None
    return _create_from_tag(oc, model, str(pretrained))


HUB_HOST = ("huggingface.co", 443)


@cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """One connection attempt to the Hugging Face hub, so that an offline machine fails at once
    instead of after a minute of download retries."""
    import socket

    try:
        with socket.create_connection(HUB_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def _create_from_tag(oc: Any, model: str, pretrained: str) -> torch.nn.Module:
    tags = oc.list_pretrained_tags_by_model(model)
    if pretrained not in tags:
        raise unknown_name_error(f"pretrained tag for {model}", pretrained, tags)
    source = oc.get_pretrained_cfg(model, pretrained)
    check_activation(oc, model, pretrained)
    hub = (source.get("hf_hub") or "").strip("/")
    where = f"the Hugging Face repository {hub}" if hub else source.get("url") or "its source"
    advice = (f"Download {where} (open_clip_pytorch_model.bin) on a machine with internet, then pass the file: "
              f"--model {model} --pretrained /path/to/open_clip_pytorch_model.bin")
    if not _cached(hub) and (os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_reachable()):
        raise ModelError(f"weights '{pretrained}' for {model} are not in the local cache and no network is reachable. {advice}")
    try:
        return oc.create_model(model, pretrained=pretrained)
    except Exception as exc:  # noqa: BLE001 - download failures come as RuntimeError
        first = first_line(exc, None)
        raise ModelError(f"weights '{pretrained}' for {model} could not be loaded ({first}). {advice}") from exc


def check_activation(oc: Any, model: str, pretrained: str) -> None:
    """Weights trained with QuickGELU (OpenAI's CLIP and its fine-tunes) in an architecture
    built with nn.GELU give wrong embeddings without an error; refuse the pair, before any
    download, and name the architecture that fits."""
    trained_quick = (oc.get_pretrained_cfg(model, pretrained) or {}).get("quick_gelu")
    if trained_quick and not (oc.get_model_config(model) or {}).get("quick_gelu"):
        fits = f"{model}-quickgelu"
        hint = f"use --model {fits}" if fits in oc.list_models() else "use a -quickgelu architecture"
        raise ConfigError(f"weights '{pretrained}' were trained with QuickGELU, which {model} does not use "
                          f"(its embeddings would be wrong); {hint}, or the zoo card (rsretrieve models)")


def _cached(hub: str) -> bool:
    """Whether open_clip's weights of hub repository ``hub`` are in the Hugging Face cache."""
    if not hub:
        return False
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(hub, name), str)
               for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))


def _file_transform(cfg: dict[str, Any]) -> Any:
    from open_clip.transform import PreprocessCfg, image_transform_v2

    return image_transform_v2(PreprocessCfg(**cfg), is_train=False)


def _normalise(x: torch.Tensor) -> np.ndarray:
    return F.normalize(x.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)


class OpenClipEncoder:
    """An open_clip model with its tokenizer and preprocessing, for inference."""

    adapters_bundled = False

    def __init__(self, spec: EncoderSpec, device: str | None = None) -> None:
        if spec.backend != "open_clip":
            raise ConfigError(f"OpenClipEncoder got backend '{spec.backend}'")
        self.spec = spec
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = _create(spec).to(self.device).eval()
        self.tokenizer = tokenizer(spec.model)
        cfg = _open_clip().get_model_preprocess_cfg(self.model)
        size = cfg.get("size", 224)
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        self.mean = torch.tensor(cfg.get("mean", (0.5, 0.5, 0.5)), device=self.device)
        self.std = torch.tensor(cfg.get("std", (0.5, 0.5, 0.5)), device=self.device)
        self.interpolation = "bicubic" if cfg.get("interpolation") == "bicubic" else "bilinear"
        # open_clip's own inference transform (resize, centre crop, RGB, tensor, normalise):
        # file images (caption benchmarks) go through exactly what a plain open_clip script uses.
        self.file_transform = _file_transform(cfg)
        with torch.no_grad():
            self.embed_dim = int(self.model.encode_text(self.tokenizer(["x"]).to(self.device)).shape[-1])
        self.weights_sha256 = weights_digest(self.model)

    def describe(self) -> dict[str, Any]:
        return {
            **self.spec.to_dict(),
            "weights_sha256": self.weights_sha256,
            "embed_dim": self.embed_dim,
            "image_size": list(self.image_size),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    def preprocess(self, pixels: torch.Tensor) -> torch.Tensor:
        """Resize [0, 1] images to the model's input size and apply its normalisation."""
        pixels = torch.as_tensor(pixels).to(self.device, torch.float32)
        if tuple(pixels.shape[-2:]) != self.image_size:
            pixels = F.interpolate(
                pixels, size=self.image_size, mode=self.interpolation,
                align_corners=False, antialias=True,
            )
        return (pixels - self.mean[None, :, None, None]) / self.std[None, :, None, None]

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, sensor: str | None = None) -> np.ndarray:
        return _normalise(self.model.encode_image(self.preprocess(pixels)))

    @torch.no_grad()
    def encode_files(self, images: Sequence[Any]) -> np.ndarray:
        """PIL images, through ``file_transform`` -> (N, D) L2-normalised float32."""
        batch = torch.stack([self.file_transform(image) for image in images]).to(self.device)
        return _normalise(self.model.encode_image(batch))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return _normalise(self.model.encode_text(self.tokenizer(list(texts)).to(self.device)))

