"""Peak memory (RSS) of indexing and evaluation as the corpus grows.

    .venv/bin/python benchmarks/memory.py [--sizes 100000 1000000]

Each step runs in a fresh process, whose peak RSS the kernel reports (ru_maxrss):
- index: N 512-d embeddings -> FAISS flat index -> an index folder (what follows embedding);
- eval: 1,000 queries searched over that folder (depth 1000, all + per sensor) and scored
  as `rsretrieve eval --index` does (runs held as arrays), minus the text encoder.

Vectors are 384-d by default (--dim), the width of CLOSP and MiniLM: a flat index of 1M
such vectors is 1.43 GiB by itself, which the table shows beside the peak.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np



def child_index(folder: Path, n: int, dim: int) -> None:
    from rsretrieve.index import IndexSettings, _write_folder, build_faiss

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = [f"{'benv2s2' if i % 2 else 'benv2s1'}_{i:08d}" for i in range(n)]
    manifest = {"format": "rsretrieve-index", "format_version": 1, "index": {"kind": "flat"}, "counts": {"total": n},
                "encoder": {"backend": "random", "model": "random", "pretrained": None, "seed": 0}, "embed_dim": dim}
    _write_folder(folder, keys, ["s2" if i % 2 else "s1" for i in range(n)], [[] for _ in range(n)],
                  vectors, build_faiss(vectors, IndexSettings()), manifest, False)


def child_eval(folder: Path) -> None:
    from rsretrieve.evaluate import Corpus, evaluate_slices
    from rsretrieve.index import load_index
    from rsretrieve.search import search_vectors

    index = load_index(folder)
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((1000, index.embeddings.shape[1]), dtype=np.float32)
    qids = [f"q{i}" for i in range(1000)]
    qrels = {q: {index.keys[j]: int(rng.integers(1, 3)) for j in rng.choice(len(index.keys), 20, replace=False)} for q in qids}
    runs = {"all": search_vectors(index, qids, queries, 1000)}
    for sensor in ("s1", "s2"):
        runs[sensor] = search_vectors(index, qids, queries, 1000, sensor)
    corpus = Corpus.from_keys(index.keys, index.sensors)
    evaluate_slices(qrels, dict.fromkeys(qids, "q"), runs, corpus, ["ndcg@10", "map@100", "recall@100", "ndcg@1000"],
                    corpus_sizes=corpus.sizes(list(runs)))


def run_child(*args: str) -> tuple[float, float]:
    """Run a step in a fresh process; it prints its own peak RSS (kB) as its last line."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1]) / 1024, time.perf_counter() - started


def main() -> None:
    if sys.argv[1:2] in (["--child-index"], ["--child-eval"]):
        if sys.argv[1] == "--child-index":
            child_index(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        else:
            child_eval(Path(sys.argv[2]))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=384)
    args = parser.parse_args()
    print(f"{args.dim}-d vectors, flat index\n")
    print("| corpus | step | peak RSS (MB) | seconds | embeddings alone (MB) |\n|---|---|---|---|---|")
    for n in sorted(args.sizes):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "idx"
            peak, seconds = run_child("--child-index", str(folder), str(n), str(args.dim))
            print(f"| {n:,} | index (embeddings -> FAISS -> folder) | {peak:.0f} | {seconds:.0f} | {n * args.dim * 4 / 2**20:.0f} |", flush=True)
            peak, seconds = run_child("--child-eval", str(folder))
            print(f"| {n:,} | eval (1,000 queries, depth 1000, 3 slices) | {peak:.0f} | {seconds:.0f} | {n * args.dim * 4 / 2**20:.0f} |", flush=True)


if __name__ == "__main__":
    main()
