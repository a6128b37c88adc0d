"""Where rsretrieve keeps what it makes for the user: the embedded sample, default indexes,
checkpoints. One environment variable moves all of it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """``$RSRETRIEVE_HOME``, default ``~/.cache/rsretrieve``."""
    return Path(os.environ.get("RSRETRIEVE_HOME", Path.home() / ".cache" / "rsretrieve"))


# The shipped default model (config.json + model.safetensors), inside the package.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "weights" / "default"


def resolve_model_dir(name: str) -> Path:
    """The folder of a trained model: ``default`` (the shipped one) or a path."""
    from rsretrieve.errors import ModelError

    if name == "default":
        return DEFAULT_MODEL_DIR
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelError(f"model folder {path} not found (--model rsretrieve-default is the shipped model)")
    return path
