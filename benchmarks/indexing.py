"""Indexing throughput: `build_index` images/s vs the bare encoder forward on the same batches.

    .venv/bin/python benchmarks/indexing.py [--model rsretrieve-tiny] [--batch-size 32]

Same model, batch size and torch threads. The bare forward embeds batches already in memory
(adapter + encoder only); build_index adds HDF5 reads, NaN cleaning, batch files and FAISS.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.datasets.fixtures.crisislandmark import ensure_default_sample
from rsretrieve.embeddings import build_pipeline
from rsretrieve.zoo import resolve_model
from rsretrieve.index import build_index


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="default: the shipped model")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dataset = CrisisLandMark(ensure_default_sample())
    pipeline = build_pipeline(resolve_model(args.model), sensors=dataset.sensors)
    batches = list(dataset.iter_batches(dataset.plan_batches(args.batch_size)))
    n = len(dataset.samples)
    for batch in batches[:2]:
        pipeline.embed(batch)  # warm-up
    bare, full = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        for batch in batches:
            pipeline.embed(batch)
        bare.append(n / (time.perf_counter() - started))
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            build_index(dataset, pipeline, Path(tmp) / "idx", args.batch_size)
            full.append(n / (time.perf_counter() - started))
    print(f"model {args.model or 'default'}, {n} images, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    print("| path | images/s (best of %d) |\n|---|---|" % args.repeats)
    print(f"| bare forward (adapter + encoder, batches in memory) | {max(bare):.0f} |")
    print(f"| rsretrieve index (read + embed + save + FAISS) | {max(full):.0f} |")
    print(f"| ratio | {max(full) / max(bare):.2f} |")


if __name__ == "__main__":
    main()
