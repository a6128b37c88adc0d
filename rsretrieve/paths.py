"""Where rsretrieve keeps what it makes for the user: the embedded sample, default indexes,
checkpoints. One environment variable moves all of it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """``$RSRETRIEVE_HOME``, default ``~/.cache/rsretrieve``."""
    return Path(os.environ.get("RSRETRIEVE_HOME", Path.home() / ".cache" / "rsretrieve"))
