"""Train the default model shipped in rsretrieve/weights/default (reproducible, ~2 min on 2 cores).

    .venv/bin/python scripts/train_default.py

Trains on the train split of the embedded sample (seed 0), keeps the epoch with the best
validation nDCG@10, and swaps it into the package atomically. `rsretrieve demo` then
rebuilds its own index, which the new weights make stale. The same run, by hand:
``rsretrieve train --out runs/default-train --epochs 60 --patience 12``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from rsretrieve.datasets.fixtures.crisislandmark import ensure_default_sample
from rsretrieve.encoders.trained import DEFAULT_MODEL_DIR
from rsretrieve.training import TrainConfig, train

CONFIG = TrainConfig(epochs=60, patience=12, seed=0)


def install(best: Path) -> None:
    """Swap the new weights into the package in one rename: an interrupted or failed run
    leaves the old model whole, never a half-copied one."""
    staging = Path(tempfile.mkdtemp(prefix=".default.", suffix=".tmp", dir=DEFAULT_MODEL_DIR.parent))
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(best / name, staging / name)
    old = DEFAULT_MODEL_DIR.with_name(".default.old")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(DEFAULT_MODEL_DIR, old)
    os.replace(staging, DEFAULT_MODEL_DIR)
    shutil.rmtree(old)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        record = train(
            ensure_default_sample(), Path(tmp) / "run", CONFIG,
            on_epoch=lambda e: print(f"epoch {e['epoch']:3d} loss {e['loss']:.4f} val ndcg@10 {e['ndcg@10']:.4f}", flush=True),
        )
        install(Path(tmp) / "run" / "best")
    print(f"best epoch {record['best_epoch']} (val ndcg@10 {record['best_ndcg@10']:.4f}) -> {DEFAULT_MODEL_DIR}")


if __name__ == "__main__":
    main()
