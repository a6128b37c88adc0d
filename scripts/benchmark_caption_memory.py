"""Peak memory of caption indexing as the corpus grows (bounded: one batch + the index).

    .venv/bin/python scripts/benchmark_caption_memory.py [ROWS ...]     # default 100000 1000000

For each size, a synthetic Git-10M-format set (no images, 100k rows a shard) is written to a
temporary folder, then `rsretrieve index --what captions --index-type ivf --pq 16` runs in a fresh
process with the content-hashed `random` text encoder (64-d; the data path, not a model, is
what is measured) and its peak RSS is read from the kernel (ru_maxrss of the children, which
is the largest so far: sizes run in ascending order).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rsretrieve.datasets.fixtures.git10m import generate_git10m


def measure(rows: int, folder: Path) -> tuple[float, float, float]:
    data = generate_git10m(folder / f"git10m-{rows}", n_rows=rows, shards=max(1, rows // 100_000), image_size=0)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rsretrieve", "index", "--dataset", "git10m", "--what", "captions",
         "--data", str(data), "--out", str(folder / f"idx-{rows}"), "--model", "random",
         "--index-type", "ivf", "--pq", "16", "--train-size", "50000", "--batch-size", "4096"],
        check=True, capture_output=True,
    )
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    index_mb = (folder / f"idx-{rows}" / "index.faiss").stat().st_size / 1e6
    return peak_kb / 1024, index_mb, time.perf_counter() - started


def main() -> None:
    sizes = sorted(int(a) for a in sys.argv[1:]) or [100_000, 1_000_000]
    print("| captions | peak RSS (MB) | index.faiss (MB) | wall (s) |\n|---|---|---|---|")
    for rows in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            peak, size, seconds = measure(rows, Path(tmp))
        print(f"| {rows:,} | {peak:.0f} | {size:.1f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
