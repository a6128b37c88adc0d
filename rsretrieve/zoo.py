"""The model zoo: one YAML card per model in configs/models/ (and in $RSRETRIEVE_ZOO folders).

A card says which backend loads the model, where its weights come from (open_clip tag,
hub id, or a checkpoint file expected under ``$RSRETRIEVE_HOME/checkpoints``), its
preprocessing, the band adapter per sensor, and the scores published for it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rsretrieve.config import from_mapping, read_mapping
from rsretrieve.paths import cache_home
from rsretrieve.encoders import EncoderSpec
from rsretrieve.errors import ConfigError, ModelError
from rsretrieve.registry import unknown_name_error

REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"
BACKENDS_WITHOUT_WEIGHTS = ("random",)


@dataclasses.dataclass(frozen=True)
class Reference:
    """A published score: ``value`` of ``metric`` on ``dataset``/``slice`` per ``source``."""

    dataset: str
    metric: str
    slice: str
    value: float
    source: str


@dataclasses.dataclass(frozen=True)
class ModelCard:
    name: str
    description: str
    backend: str
    model: str
    pretrained: str | None = None
    checkpoint: str | None = None
    download: str | None = None
    seed: int = 0
    embed_dim: int | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    adapters: Mapping[str, str] | None = None
    references: tuple[Reference, ...] = ()

    def checkpoint_path(self) -> Path | None:
        if self.checkpoint is None:
            return None
        path = Path(self.checkpoint).expanduser()
        return path if path.is_absolute() else checkpoints_dir() / path

    def availability(self) -> tuple[bool, str]:
        """(usable now, where the weights are or what is missing)."""
        path = self.checkpoint_path()
        if path is not None:
            return (path.exists(), str(path) if path.exists() else f"missing {path} (get it from {self.download})")
        if self.backend in BACKENDS_WITHOUT_WEIGHTS or (self.backend == "open_clip" and self.pretrained is None):
            return True, "no weights needed"
        if self.backend == "rsretrieve":
            from rsretrieve.encoders.trained import resolve_model_dir

            try:
                return True, str(resolve_model_dir(self.model))
            except ModelError as exc:
                return False, str(exc)
        return _in_hf_cache(self)

    def spec(self) -> EncoderSpec:
        path = self.checkpoint_path()
        if self.backend == "open_clip":
            return EncoderSpec("open_clip", self.model, str(path) if path else self.pretrained, self.seed)
        return EncoderSpec(self.backend, str(path) if path else self.model, self.pretrained, self.seed)

    @classmethod
    def from_file(cls, path: Path) -> "ModelCard":
        data = dict(read_mapping(path))
        refs = data.pop("references", None) or []
        for key in ("mean", "std"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        card = from_mapping(cls, data, str(path))
        references = tuple(from_mapping(Reference, r, f"{path}: references[{i}]") for i, r in enumerate(refs))
        if card.name != path.stem:
            raise ConfigError(f"{path}: name '{card.name}' must match the file name '{path.stem}'")
        return dataclasses.replace(card, references=references)


def _in_hf_cache(card: ModelCard) -> tuple[bool, str]:
    from huggingface_hub import try_to_load_from_cache

    if card.backend == "open_clip":
        from rsretrieve.encoders.open_clip import _open_clip

        source = _open_clip().get_pretrained_cfg(card.model, card.pretrained or "")
        repo, filename = (source.get("hf_hub") or "").rstrip("/"), "open_clip_pytorch_model.bin"
    else:
        repo, filename = card.model, "config.json"
    if repo and isinstance(try_to_load_from_cache(repo, filename), str):
        return True, f"Hugging Face cache ({repo})"
    return False, f"not cached: download {repo or card.download} when online"


def checkpoints_dir() -> Path:
    return cache_home() / "checkpoints"


def zoo_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("RSRETRIEVE_ZOO", "").split(os.pathsep) if p]
    return [REPO_CONFIGS / "models", *extra]


def load_zoo(dirs: list[Path] | None = None) -> dict[str, ModelCard]:
    cards: dict[str, ModelCard] = {}
    origin: dict[str, Path] = {}
    for folder in dirs if dirs is not None else zoo_dirs():
        for path in sorted(Path(folder).glob("*.yaml")):
            card = ModelCard.from_file(path)
            if card.name in cards:
                raise ConfigError(f"{path}: model '{card.name}' is already defined in {origin[card.name]}")
            cards[card.name], origin[card.name] = card, path
    return cards


def get_card(name: str, zoo: Mapping[str, ModelCard] | None = None) -> ModelCard:
    zoo = load_zoo() if zoo is None else zoo
    if name not in zoo:
        raise unknown_name_error("model", name, zoo)
    return zoo[name]


def card_summary(card: ModelCard) -> dict[str, Any]:
    available, where = card.availability()
    return {"name": card.name, "backend": card.backend, "model": card.model, "available": available,
            "weights": where, "description": card.description}
