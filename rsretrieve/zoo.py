"""The model zoo and the one way a model name becomes an encoder.

A card (``rsretrieve/cards/*.yaml``, shipped inside the package, plus ``$RSRETRIEVE_ZOO``
folders) says which backend loads the model, where its weights come from and where they go
(``$RSRETRIEVE_HOME/checkpoints``), its preprocessing, the band adapter per sensor, and the
scores published for it. ``resolve_model`` turns what a user types after ``--model`` (a card
name, an open_clip architecture, an ``hf-hub:`` id, a model folder) into an ``EncoderSpec``,
for every command.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rsretrieve.config import from_mapping, read_mapping
from rsretrieve.encoders import DEFAULT_BACKEND, DEFAULT_MODEL, EncoderSpec
from rsretrieve.errors import ConfigError, ModelError, warn
from rsretrieve.paths import cache_home
from rsretrieve.registry import did_you_mean, unknown_name_error

DEFAULT_CARD = "rsretrieve-default"  # the zoo card of the shipped model (encoder spec rsretrieve:default)

CARDS_DIR = Path(__file__).resolve().parent / "cards"
BACKENDS_WITHOUT_WEIGHTS = ("random",)
# Backends whose spec names the architecture and takes the weights file as ``pretrained``
# (the others, model folders, take the folder as the model).
WEIGHTS_AS_PRETRAINED = ("open_clip", "closp", "msclip", "dofa", "dofa-so400m")
# A card's download command names the checkpoints folder by this placeholder; what is shown
# has the real folder in its place.
HOME_PLACEHOLDER = "$RSRETRIEVE_HOME/checkpoints"
# Where the CrisisLandMark release goes: the --local-dir of its download command, which
# the "use:" line of every card and a missing suite dataset's error name.
RELEASE_DIR = "data/crisislandmark"
RELEASES = {
    "crisislandmark": "the Hugging Face dataset DarthReca/crisislandmark (hf download DarthReca/crisislandmark "
                      f"--repo-type dataset --local-dir {RELEASE_DIR})",
}


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
    notes: str | None = None
    references: tuple[Reference, ...] = ()
    # Where Hugging Face caches the weights of a hub-hosted tag (open_clip's pretrained
    # config says the same; the card says it so that `models` need not import open_clip).
    hf_hub: str | None = None
    hf_file: str = "open_clip_pytorch_model.bin"

    def checkpoint_path(self) -> Path | None:
        if self.checkpoint is None:
            return None
        path = Path(self.checkpoint).expanduser()
        return path if path.is_absolute() else checkpoints_dir() / path

    def availability(self) -> tuple[bool, str]:
        """(usable now, where the weights are or what is missing)."""
        path = self.checkpoint_path()
        if path is not None:
            return (path.exists(), str(path) if path.exists() else f"not at {path}")
        if self.backend in BACKENDS_WITHOUT_WEIGHTS or (self.backend == "open_clip" and self.pretrained is None):
            return True, "no weights needed"
        if self.backend == "rsretrieve":
            from rsretrieve.paths import resolve_model_dir

            try:
                return True, str(resolve_model_dir(self.model))
            except ModelError as exc:
                return False, str(exc)
        return _in_hf_cache(self)

    def spec(self, weights: str | None = None) -> EncoderSpec:
        """The encoder of this card; ``weights`` (``--pretrained FILE``) replaces its weights file."""
        path = Path(weights).expanduser() if weights else self.checkpoint_path()
        if self.backend in WEIGHTS_AS_PRETRAINED:
            return EncoderSpec(self.backend, self.model, str(path) if path else self.pretrained, self.seed)
        return EncoderSpec(self.backend, str(path) if path else self.model, self.pretrained, self.seed)

    def usage(self) -> str:
        """The command that indexes the CrisisLandMark release (where its download command
        puts it) with this model, then scores it."""
        return (f"rsretrieve index --model {self.name} --data {RELEASE_DIR} --out runs/{self.name} && "
                f"rsretrieve eval --index runs/{self.name}")

    def source(self) -> str | None:
        """Where the weights come from, its download command with the checkpoints folder
        written out: pasted, it puts the file where rsretrieve looks, whatever the shell has
        (an unset $RSRETRIEVE_HOME would make it /checkpoints)."""
        if self.download is None:
            return None
        return self.download.replace(HOME_PLACEHOLDER, shlex.quote(str(checkpoints_dir().absolute())))

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

    if card.hf_hub is not None:
        repo, filename = card.hf_hub, card.hf_file
    elif card.backend == "open_clip":
        from rsretrieve.encoders.open_clip import _open_clip

        source = _open_clip().get_pretrained_cfg(card.model, card.pretrained or "")
        repo, filename = (source.get("hf_hub") or "").rstrip("/"), "open_clip_pytorch_model.bin"
    else:
        repo, filename = card.model, "config.json"
    if repo and isinstance(try_to_load_from_cache(repo, filename), str):
        return True, f"Hugging Face cache ({repo})"
    return False, f"not cached: download {repo or card.source()} when online"


def checkpoints_dir() -> Path:
    return cache_home() / "checkpoints"


def zoo_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("RSRETRIEVE_ZOO", "").split(os.pathsep) if p]
    return [CARDS_DIR, *extra]


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
    path = card.checkpoint_path()
    return {"name": card.name, "backend": card.backend, "model": card.model, "available": available,
            "weights": where, "description": card.description, "source": card.source() or "-",
            "put_at": str(path) if path else "-", "command": card.usage(), "notes": card.notes or ""}


def resolve_model(model: str | None = None, pretrained: str | None = None, seed: int = 0) -> EncoderSpec:
    """What follows ``--model`` (and ``--pretrained``) -> the encoder spec, in this order:

    nothing or ``rsretrieve-default`` (old name ``default``): the shipped model; ``random``: the chance baseline; a zoo card
    name (``--pretrained FILE`` then replaces the card's weights file); ``hf-hub:org/name``
    (open_clip, online); a folder holding a model trained with ``rsretrieve train``, or a
    transformers dual encoder (its config.json has a ``model_type``); an open_clip
    architecture (``--pretrained`` a tag or a checkpoint file; none: random from ``seed``).
    """
    if model is None and pretrained is not None:
        raise ConfigError("--pretrained needs --model (a zoo card or an open_clip architecture)")
    pretrained = _resolved(pretrained)
    if model == DEFAULT_MODEL:
        warn(f"--model {DEFAULT_MODEL} is now --model {DEFAULT_CARD} (the shipped model's zoo card); the old name will go")
    if model is None or model == DEFAULT_MODEL:
        return EncoderSpec(DEFAULT_BACKEND, DEFAULT_MODEL, pretrained, seed)
    if model == "random":
        if pretrained is not None:
            raise ConfigError("--pretrained cannot be used with --model random: the chance baseline has no weights")
        return EncoderSpec("random", "random", None, seed)
    zoo = load_zoo()
    if model in zoo:
        card = zoo[model]
        if pretrained is None and card.checkpoint_path() is not None and not card.checkpoint_path().exists():  # type: ignore[union-attr]
            raise ModelError(
                f"model '{model}' needs its weights at {card.checkpoint_path()}; get them from {card.source()}, "
                f"or pass the file with --pretrained FILE"
            )
        return card.spec(pretrained)
    if model.startswith("hf-hub:"):
        return EncoderSpec("open_clip", model, pretrained, seed)
    folder = Path(model).expanduser()
    if (folder / "config.json").is_file():
        return EncoderSpec(_folder_backend(folder), str(folder.resolve()), pretrained, seed)
    from rsretrieve.encoders.open_clip import list_models

    architectures = list_models()
    if model in architectures:
        return EncoderSpec("open_clip", model, pretrained, seed)
    raise ConfigError(
        f"unknown model '{model}'.{did_you_mean(model, [*zoo, *architectures])} Give a zoo card "
        "(rsretrieve models), an open_clip architecture (rsretrieve list architectures), hf-hub:org/name or a model folder"
    )


def _resolved(pretrained: str | None) -> str | None:
    """A weights path as an absolute path (what the manifest stores, so that ``search`` from
    another folder finds the same file); an open_clip tag (``openai``) as given."""
    if pretrained is None:
        return None
    path = Path(pretrained).expanduser()
    return str(path.resolve()) if path.exists() else pretrained


def _folder_backend(folder: Path) -> str:
    """``rsretrieve`` for a folder written by ``rsretrieve train``, ``transformers`` for a hub snapshot."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder / 'config.json'}: not readable JSON ({exc})") from None
    return "transformers" if isinstance(config, dict) and "model_type" in config else DEFAULT_BACKEND
