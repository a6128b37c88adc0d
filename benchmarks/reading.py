"""The data path, whole processes: `rsretrieve index --model random --readers N` against a bare
single-process h5py loop, on uncompressed and on gzip shards.

    .venv/bin/python benchmarks/reading.py [--n-samples 3000] [--repeats 3] [--cache DIR]

The `random` encoder hashes each image's bytes (sha256) to seed 64 normals, so what is timed
is reading: HDF5 through the release's external links, decompression, NaN accounting, batch
files, FAISS. The bare loop does the same reads and the same hashing and nothing else, and
writes its vectors; they must equal the index's, key by key (checked here). Each command is a
fresh process, timed as the median of --repeats, run in turns (bare, 1, 2, bare, ...) after
the shards were read once, so every one of them reads from the page cache; `cat` of the
shard files gives that cache's speed, the upper limit of any reader. MB/s counts the
decoded float32 image bytes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from processes import measure
from rsretrieve.datasets.crisislandmark import CrisisLandMark

PYTHON = sys.executable
RSRETRIEVE = str(Path(PYTHON).with_name("rsretrieve"))

BARE = """
import hashlib, sys
import h5py, hdf5plugin, numpy as np, pyarrow.parquet as pq
root, out = sys.argv[1], sys.argv[2]
meta = pq.read_table(f"{root}/metadata.parquet", columns=["key", "split"]).to_pydict()
keys = [k for k, s in zip(meta["key"], meta["split"]) if s == "test"]
vectors = np.empty((len(keys), 64), np.float32)
with h5py.File(f"{root}/crisislandmark.h5", "r") as main:
    for row, key in enumerate(keys):
        image = main[key]["image"][()]
        digest = hashlib.sha256((0).to_bytes(8, "little") + image.tobytes()).digest()
        v = np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(64)
        vectors[row] = v / np.linalg.norm(v)
np.save(out, vectors)
print("\\n".join(keys))
"""


def image_bytes(root: Path) -> int:
    """Decoded bytes of the test split's images: 12 or 2 bands of 120 x 120 float32."""
    dataset = CrisisLandMark(root)
    return sum(int(np.prod(dataset.image_shape(s.sensor))) * 4 for s in dataset.samples)


def cat_speed(root: Path) -> tuple[float, int]:
    """Seconds and bytes of `cat` over every HDF5 file (from the page cache, warmed first)."""
    files = sorted(str(p) for p in root.glob("*.h5"))
    subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)
    started = time.perf_counter()
    subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started, sum(Path(f).stat().st_size for f in files)


def check_equal(index: Path, bare_vectors: Path, bare_keys: list[str]) -> None:
    keys = pq.read_table(index / "ids.parquet", columns=["key"]).column("key").to_pylist()
    ours = dict(zip(keys, np.load(index / "embeddings.npy")))
    theirs = np.load(bare_vectors)
    if set(keys) != set(bare_keys) or any(not np.array_equal(ours[k], v) for k, v in zip(bare_keys, theirs)):
        raise SystemExit(f"{index}: embeddings differ from the bare loop's")


def run(root: Path, work: Path, repeats: int) -> list[tuple[str, float, float]]:
    """(label, median seconds, peak MiB) of the bare loop and of --readers 1 and 2."""
    commands = {
        "bare h5py loop (1 process)": [PYTHON, "-c", BARE, str(root), str(work / "bare.npy")],
        **{f"rsretrieve index --readers {n}": [RSRETRIEVE, "index", "--data", str(root), "--model", "random",
                                                "--readers", str(n), "--out", str(work / f"idx{n}"), "--force"]
           for n in (1, 2)},
    }
    for command in commands.values():  # warm the page cache and every import once
        subprocess.run(command, check=True, capture_output=True)
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    bare_keys: list[str] = []
    for _ in range(repeats):
        for label, command in commands.items():
            wall, peak, out = measure(command, 1)
            times[label].append((wall, peak))
            if label.startswith("bare"):
                bare_keys = out.split()
    for n in (1, 2):
        check_equal(work / f"idx{n}", work / "bare.npy", bare_keys)
    a, b = (np.load(work / f"idx{n}" / "embeddings.npy").tobytes() for n in (1, 2))
    if a != b:
        raise SystemExit("--readers 1 and --readers 2 wrote different embeddings")
    return [(label, float(np.median([w for w, _ in t])), max(p for _, p in t)) for label, t in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-samples", type=int, default=3000, help="samples of the generated set (80 %% test)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compression", default="none,gzip", help="comma-separated: none, gzip, lz4, zstd, blosc")
    parser.add_argument("--cache", type=Path, default=None, help="keep the generated sets here and reuse them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        print(f"{args.n_samples} samples, median of {args.repeats} fresh processes each\n")
        print("| shards | command | wall s | MB/s | vs bare loop | vs --readers 1 | peak RSS MiB |")
        print("|---|---|---|---|---|---|---|")
        for compression in args.compression.split(","):
            root = cache / f"clm-{args.n_samples}-{compression}"
            if not (root / "crisislandmark.h5").is_file():
                subprocess.run([RSRETRIEVE, "sample", str(root), "--n-samples", str(args.n_samples),
                                "--compression", compression, "--force"], check=True, capture_output=True)
            size = image_bytes(root)
            work = Path(tmp) / f"work-{compression}"
            work.mkdir()
            rows = run(root, work, args.repeats)
            bare, one = rows[0][1], rows[1][1]
            for label, wall, peak in rows:
                print(f"| {compression} | {label} | {wall:.2f} | {size / 1e6 / wall:.0f} | {bare / wall:.2f}x "
                      f"| {one / wall:.2f}x | {peak:.0f} |")
            seconds, stored = cat_speed(root)
            print(f"| {compression} | `cat` of the shard files (page cache) | {seconds:.2f} | "
                  f"{stored / 1e6 / seconds:.0f} (stored bytes) | | | |")


if __name__ == "__main__":
    main()
