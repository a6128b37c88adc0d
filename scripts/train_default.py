"""Train the default model shipped in rsretrieve/weights/default (reproducible, ~2 min on 2 cores).

    .venv/bin/python scripts/train_default.py

Trains on the train split of the embedded sample (seed 0), keeps the epoch with the best
validation nDCG@10, and copies it into the package. The same run, by hand:
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


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        record = train(
            ensure_default_sample(), Path(tmp) / "run", CONFIG,
            on_epoch=lambda e: print(f"epoch {e['epoch']:3d} loss {e['loss']:.4f} val ndcg@10 {e['ndcg@10']:.4f}", flush=True),
        )
        shutil.rmtree(DEFAULT_MODEL_DIR, ignore_errors=True)
        shutil.copytree(Path(tmp) / "run" / "best", DEFAULT_MODEL_DIR)
    print(f"best epoch {record['best_epoch']} (val ndcg@10 {record['best_ndcg@10']:.4f}) -> {DEFAULT_MODEL_DIR}")


if __name__ == "__main__":
    main()
