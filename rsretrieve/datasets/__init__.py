"""Dataset readers, registered by one name per format: ``crisislandmark``, ``git10m``,
``bigearthnet-txt``, ``rs-captions`` (the same names serve ``sample --format``, see ``datasets.fixtures``).
Every reader implements ``datasets.base.Dataset``; the pipeline asks it, never a format."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from rsretrieve.errors import ConfigError
from rsretrieve.registry import Registry

DATASETS: Registry[Any] = Registry("dataset", "rsretrieve.datasets")
DATASETS.register_lazy("crisislandmark", "rsretrieve.datasets.crisislandmark:CrisisLandMark")
DATASETS.register_lazy("git10m", "rsretrieve.datasets.git10m:Git10M")
DATASETS.register_lazy("bigearthnet-txt", "rsretrieve.datasets.bigearthnet_txt:BigEarthNetTask")
DATASETS.register_lazy("rs-captions", "rsretrieve.datasets.rs_captions:RSCaptions")
# Names that earlier versions wrote into index manifests.
RENAMED = {"bigearthnet": "bigearthnet-txt"}


def dataset_class(name: str) -> Any:
    """The reader class of format ``name`` ("did you mean" when unknown)."""
    return DATASETS.get(RENAMED.get(name, name))


def open_dataset(name: str, root: Path, **options: Any) -> Any:
    """Open format ``name`` at ``root`` with the options its reader takes (split, sensors,
    limit, strict); an option the format does not have is an error naming it."""
    cls = dataset_class(name)
    accepted = [p for p in inspect.signature(cls).parameters if p != "root"]
    unknown = [key for key, value in options.items() if key not in accepted and value is not None]
    if unknown:
        raise ConfigError(
            f"dataset format '{cls.name}' has no option '{unknown[0]}' (it takes {', '.join(accepted) or 'none'}; "
            f"splits: {', '.join(cls.splits)})"
        )
    return cls(root, **{key: value for key, value in options.items() if key in accepted})


def topic_paths(name: str, root: Path) -> tuple[Path, Path]:
    """Where the dataset of format ``name`` at ``root`` keeps its queries and qrels."""
    paths = dataset_class(name).topic_paths(Path(root))
    if paths is None:
        raise ConfigError(f"dataset format '{name}' ships no queries/qrels; give --queries and --qrels")
    return paths
