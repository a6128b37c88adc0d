"""GPU indexing: `build_index` with CLOSP-RN image towers (random init) in fp32 and bf16,
against the bare forward on the same GPU, and the reader's MB/s.

    python benchmarks/gpu.py [--n-samples 50000] [--readers 16] [--batch-size 256] [--out table.md]

Run on a GPU node (one run of the device check). The set is CrisisLandMark-layout,
uncompressed: 400 patches from `rsretrieve sample`, written again under new keys into the
release's shard names until there are --n-samples (generating 50,000 patches from scratch
takes longer than the measurement). The encoder is CLOSP-RN's two ResNet-50 towers with their
projections, built by the closp backend's own `build_tower` and `prepare`, with no text side
(all-MiniLM-L6-v2 is not needed to index images). Measured, in one process:
- bare forward: prepare + tower + projection on batches already on the GPU;
- rsretrieve: `build_index` (parallel readers, pinned copies, autocast, batch files, FAISS);
- readers alone: the planned batches read by --readers processes, MB/s of decoded pixels.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class ClospTowers:
    """CLOSP-RN's image side as an rsretrieve encoder (random weights, no text side)."""

    adapters_bundled = True

    def __init__(self, device: str, seed: int = 0) -> None:
        import torch

        from rsretrieve.encoders import EncoderSpec
        from rsretrieve.encoders.closp import CHANNELS, FEATURES, TEXT_DIM, build_tower

        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.spec = EncoderSpec("closp", "closp-rn", None, seed)
        self.towers = {s: build_tower("resnet50", CHANNELS[s], FEATURES["resnet50"]).to(self.device).eval() for s in CHANNELS}
        self.projections = {s: torch.nn.Linear(FEATURES["resnet50"], TEXT_DIM).to(self.device) for s in CHANNELS}
        self.embed_dim = TEXT_DIM
        self.weights_sha256 = hashlib.sha256(f"closp-rn-random-{seed}".encode()).hexdigest()

    def describe(self) -> dict:
        return {**self.spec.to_dict(), "weights_sha256": self.weights_sha256, "embed_dim": self.embed_dim}

    def encode_images(self, pixels, sensor: str) -> np.ndarray:  # noqa: ANN001
        import torch
        import torch.nn.functional as F

        from rsretrieve.encoders.closp import prepare

        with torch.no_grad():
            x = prepare(torch.as_tensor(pixels).to(self.device, non_blocking=True), sensor, "resnet50")
            return F.normalize(self.projections[sensor](self.towers[sensor](x)).float(), dim=-1).cpu().numpy()


def replicate(seed_root: Path, out: Path, n: int) -> Path:
    """A CrisisLandMark-layout folder of ``n`` patches: the seed set's samples again and again
    under new keys, in the release's shard names (uncompressed)."""
    import h5py
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rsretrieve.datasets.crisislandmark import CrisisLandMark
    from rsretrieve.datasets.fixtures.crisislandmark import SOURCE_SHARDS

    seed = CrisisLandMark(seed_root, split="test")
    images = {s.key: seed.read_raw(s.key) for s in seed.samples}
    keys, labels = [], []
    out.mkdir(parents=True)
    shards: dict[str, h5py.File] = {}
    with h5py.File(out / "crisislandmark.h5", "w") as main:
        for i in range(n):
            info = seed.samples[i % len(seed.samples)]
            source = info.key.rsplit("_", 1)[0]
            name = SOURCE_SHARDS[source][0].format(part=1 + i % 4)
            if name not in shards:
                shards[name] = h5py.File(out / name, "w")
            key = f"{source}_{i:07d}"
            group = shards[name].create_group(key)
            group.create_dataset("image", data=images[info.key])
            main[key] = h5py.ExternalLink(name, key)
            keys.append(key)
            labels.append(list(info.labels))
    for handle in shards.values():
        handle.close()
    pq.write_table(pa.table({"key": keys, "split": ["test"] * n, "labels": pa.array(labels, pa.list_(pa.string()))}),
                   out / "metadata.parquet")
    return out


def main() -> None:
    import torch

    from rsretrieve.datasets.crisislandmark import CrisisLandMark
    from rsretrieve.datasets.fixtures.crisislandmark import generate_sample
    from rsretrieve.datasets.readers import read_batches
    from rsretrieve.embeddings import ImagePipeline
    from rsretrieve.index import build_index

    parser = argparse.ArgumentParser()
    parser.add_argument("--n-samples", type=int, default=50_000)
    parser.add_argument("--readers", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--work", type=Path, default=None, help="where the set is written [a temporary folder]")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = [f"device {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}, torch {torch.__version__}, "
             f"{args.n_samples:,} patches, batch {args.batch_size}, readers {args.readers}", "",
             "| precision | path | images/s | MB/s | vs bare forward |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        started = time.perf_counter()
        root = replicate(generate_sample(Path(tmp) / "seed", n_samples=500, seed=0), Path(tmp) / "clm", args.n_samples)
        print(f"set written in {time.perf_counter() - started:.0f} s", flush=True)
        dataset = CrisisLandMark(root)
        planned = dataset.plan_batches(args.batch_size)
        size = sum(np.prod(dataset.image_shape(s.sensor)) * 4 for s in dataset.samples)
        started = time.perf_counter()
        for _ in read_batches(dataset, planned, args.readers):
            pass
        read_s = time.perf_counter() - started
        lines.append(f"| - | readers alone ({args.readers} processes) | {len(dataset.samples) / read_s:.0f} "
                     f"| {size / 1e6 / read_s:.0f} | |")
        resident = [(b.sensor, torch.from_numpy(b.images.copy()).to(device))
                    for b in read_batches(dataset, planned[: 2 * args.readers], args.readers)]
        encoder = ClospTowers(device)
        for precision in ("fp32", "bf16"):
            pipeline = ImagePipeline(encoder, {}, {"s2": "bundled", "s1": "bundled"}, precision)
            dtype = {"bf16": torch.bfloat16}.get(precision)
            for sensor, x in resident[:2]:  # warm-up (cuDNN autotuning)
                with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                    encoder.encode_images(x, sensor)
            torch.cuda.synchronize() if device == "cuda" else None
            started = time.perf_counter()
            count = 0
            for sensor, x in resident:
                with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                    encoder.encode_images(x, sensor)
                count += len(x)
            bare = count / (time.perf_counter() - started)
            started = time.perf_counter()
            build_index(dataset, pipeline, Path(tmp) / f"idx-{precision}", args.batch_size, readers=args.readers)
            ours = len(dataset.samples) / (time.perf_counter() - started)
            lines.append(f"| {precision} | bare forward (batches on the GPU) | {bare:.0f} | | 1.00x |")
            lines.append(f"| {precision} | rsretrieve build_index | {ours:.0f} | {size / 1e6 * ours / len(dataset.samples):.0f} "
                         f"| {ours / bare:.2f}x |")
            print("\n".join(lines[-2:]), flush=True)
        full, half = (np.load(Path(tmp) / f"idx-{p}" / "embeddings.npy") for p in ("fp32", "bf16"))
        lines += ["", f"bf16 vs fp32: lowest cosine similarity {np.sum(full * half, axis=1).min():.5f}"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
