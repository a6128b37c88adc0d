"""Frozen dataclass configs read from JSON/YAML mappings that reject unknown keys."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from rsretrieve.errors import ConfigError
from rsretrieve.registry import did_you_mean

C = TypeVar("C")
PRECISIONS = ("fp32", "bf16", "fp16")  # of image encoding: fp32, or autocast to bf16 / fp16


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")


def from_mapping(cls: type[C], data: Mapping[str, Any], source: str) -> C:
    """Build dataclass ``cls`` from ``data``; unknown or missing keys name ``source``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [str(key) for key in data if key not in fields]
    if len(unknown) == 1:
        raise ConfigError(f"{source}: unknown key '{unknown[0]}'.{did_you_mean(unknown[0], fields)} "
                          f"Allowed: {', '.join(fields)}.")
    if unknown:  # every one of them, not only the first
        named = ", ".join(f"'{key}'" + (f" ({hint.strip().replace('Did', 'did', 1)})" if (hint := did_you_mean(key, fields)) else "") for key in unknown)
        raise ConfigError(f"{source}: unknown keys {named}. Allowed: {', '.join(fields)}.")
    missing = [
        name
        for name, f in fields.items()
        if name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{source}: missing key(s) {', '.join(missing)}")
    return cls(**data)


def read_mapping(path: Path) -> dict[str, Any]:
    """Read a JSON or YAML file into a dict, with errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in {".yaml", ".yml"}:
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes a one-line message
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


IMAGE_ONLY_FIELDS = ("sensor", "limit", "verify", "s2_adapter", "s1_adapter", "readers", "precision", "bands")
CAPTION_ONLY_FIELDS = ("pq", "sq8", "train_size")


def foreign_message(options: list[str], what: str) -> str:
    verb = "apply" if len(options) > 1 else "applies"
    if what == "captions":
        return f"{', '.join(options)} {verb} to image indexes; a caption index reads parquet rows and encodes text"
    return f"{', '.join(options)} {verb} to caption indexes (--what captions); an image index stores every vector as it is"


@dataclasses.dataclass(frozen=True)
class IndexJob:
    """Everything ``rsretrieve index`` needs, readable from configs/index/*.yaml.

    ``data`` None means the embedded sample; ``model`` None means the shipped default model;
    ``pretrained`` None means random weights for open_clip architectures.
    """

    dataset: str = "crisislandmark"
    data: str | None = None
    split: str | None = None  # None: the format's default split (its retrieval corpus)
    sensor: str = "all"
    limit: int | None = None
    strict: bool | None = None  # None (lenient): images replace NaN/inf pixels, captions skip a bad row; both counted
    verify: bool = False  # also hash the shards' bytes to decide whether an index is current
    model: str | None = None
    pretrained: str | None = None
    seed: int = 0
    s2_adapter: str | None = None  # None: rgb for open_clip, the model's own for trained models
    s1_adapter: str | None = None  # None: sar for open_clip, the model's own for trained models
    index: str = "flat"
    nlist: int | None = None
    nprobe: int = 16
    hnsw_m: int = 32
    ef_search: int = 128
    batch_size: int | None = None  # None: 32 images (256 on CUDA), 1024 captions
    readers: int | None = None  # reader processes; None: the available cores, at most 8
    precision: str = "fp32"  # fp32, or bf16 / fp16 under autocast
    what: str = "images"  # or "captions" (Git-10M)
    pq: int | None = None
    sq8: bool = False
    train_size: int = 100_000
    bands: str | None = None  # --bands B02,B03,B04,B08: keep these bands (names or wavelengths)

    def __post_init__(self) -> None:
        """Counts checked before any work (0 is an error, not 'the default'); an option the
        kind of index asked for cannot honour is an error, never ignored."""
        for name, value in (("batch-size", self.batch_size), ("readers", self.readers)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"--{name} must be a whole number of at least 1, got {value}")
        check_precision(self.precision)
        foreign = self.foreign_options()
        if foreign:
            raise ConfigError(foreign_message(foreign, self.what))

    def foreign_options(self) -> list[str]:
        """Options given (set away from their defaults) that ``what`` cannot honour."""
        names = IMAGE_ONLY_FIELDS if self.what == "captions" else CAPTION_ONLY_FIELDS
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return ["--" + name.replace("_", "-") for name in names if getattr(self, name) != defaults[name]]

    @classmethod
    def load(cls, path: Path | None, overrides: Mapping[str, Any]) -> "IndexJob":
        """Config file values (if any), then every override that is not None."""
        base = from_mapping(cls, read_mapping(path), str(path)) if path else cls()
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def renamed_option(old: str, new: str, old_value: Any, new_value: Any) -> Any:
    """The value of an option renamed from ``old`` to ``new`` (scripts that use the old name
    keep working, with a note); both at once is an error."""
    from rsretrieve.errors import warn

    if old_value is None:
        return new_value
    if new_value is not None:
        raise ConfigError(f"{old} is the old name of {new}; give only {new}")
    warn(f"{old} is now {new}; the old name will go")
    return old_value


def required_option(name: str, value: Any) -> Any:
    """A value the command cannot do without (an option that replaced a required argument)."""
    if value is None:
        raise ConfigError(f"missing option {name}")
    return value
