"""Dataset formats, registered by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rsretrieve.registry import Registry

DATASETS: Registry[Any] = Registry("dataset", "rsretrieve.datasets")
DATASETS.register_lazy("crisislandmark", "rsretrieve.datasets.crisislandmark:CrisisLandMark")
DATASETS.register_lazy("git10m", "rsretrieve.datasets.git10m:Git10M")
DATASETS.register_lazy("bigearthnet", "rsretrieve.datasets.bigearthnet_txt:BigEarthNetTask")


def open_dataset(name: str, root: Path, **options: Any) -> Any:
    """Open dataset format ``name`` at ``root`` with split/sensor/limit options."""
    return DATASETS.get(name)(root, **options)
