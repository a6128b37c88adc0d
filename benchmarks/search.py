"""Search speed and recall: rsretrieve search vs a bare FAISS call vs numpy matmul top-k.

    .venv/bin/python benchmarks/search.py [--sizes 100000 1000000] [--queries 1000]

Clustered unit vectors of dim 512 (2,000 Gaussian clusters, as embeddings of real corpora are
clustered; uniform random vectors are the worst case of every ANN index) for the corpus and
the queries; k = 100. Exact paths (numpy,
FAISS flat, rsretrieve over a flat index) give the same top-k; IVF and HNSW settings are
compared with the exact top-100 (recall@100) and timed. HNSW is built at the smallest size
only (its build at 1M takes longer than this benchmark should).
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np

from rsretrieve.index import IndexSettings, LoadedIndex, build_faiss
from rsretrieve.search import search_vectors

DIM, K = 512, 100


def unit(rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + 0.05 * rng.standard_normal((n, DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed(fn, *args):  # noqa: ANN001, ANN002, ANN201
    started = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - started


def numpy_topk(corpus: np.ndarray, queries: np.ndarray) -> np.ndarray:
    out = np.empty((len(queries), K), np.int64)
    for start in range(0, len(queries), 256):
        scores = queries[start : start + 256] @ corpus.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        order = np.take_along_axis(scores, top, 1).argsort(1)[:, ::-1]
        out[start : start + 256] = np.take_along_axis(top, order, 1)
    return out


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact)]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((2000, DIM), dtype=np.float32) / np.sqrt(DIM)
    queries = unit(rng, args.queries, centres)
    print(f"dim {DIM}, k {K}, {args.queries} queries, faiss threads {faiss.omp_get_max_threads()}\n")
    print("| corpus | method | build (s) | queries/s | recall@100 |\n|---|---|---|---|---|")
    for n in args.sizes:
        corpus = unit(rng, n, centres)
        exact, seconds = timed(numpy_topk, corpus, queries)
        print(f"| {n:,} | numpy matmul + argpartition | - | {args.queries / seconds:.0f} | 1.000 |", flush=True)
        flat, build = timed(build_faiss, corpus, IndexSettings(kind="flat"))
        (_, ids), seconds = timed(flat.search, queries, K)
        print(f"| {n:,} | bare FAISS IndexFlatIP | {build:.1f} | {args.queries / seconds:.0f} | {recall(ids, exact):.3f} |", flush=True)
        loaded = LoadedIndex(path=None, manifest={"index": {"kind": "flat"}}, keys=[str(i) for i in range(n)],  # type: ignore[arg-type]
                             sensors=["s2"] * n, embeddings=corpus, faiss_index=flat)
        run, seconds = timed(search_vectors, loaded, [str(i) for i in range(len(queries))], queries, K)
        found = np.array([[int(d) for d, _ in run.ranked(q)] for q in run])
        print(f"| {n:,} | rsretrieve search (flat, run arrays) | - | {args.queries / seconds:.0f} | {recall(found, exact):.3f} |", flush=True)
        nlist = 1024
        ivf, build = timed(build_faiss, corpus, IndexSettings(kind="ivf", nlist=nlist))
        for nprobe in (8, 32, 128):
            ivf.nprobe = nprobe
            (_, ids), seconds = timed(ivf.search, queries, K)
            print(f"| {n:,} | IVF{nlist} nprobe {nprobe} | {build:.1f} | {args.queries / seconds:.0f} | {recall(ids, exact):.3f} |", flush=True)
        sensor_recall(n, corpus, queries, ivf, "ivf", {"nprobe": 32, "nlist": nlist})
        if n == min(args.sizes):
            hnsw, build = timed(build_faiss, corpus, IndexSettings(kind="hnsw", hnsw_m=32))
            for ef in (64, 256):
                hnsw.hnsw.efSearch = ef
                (_, ids), seconds = timed(hnsw.search, queries, K)
                print(f"| {n:,} | HNSW32 efSearch {ef} | {build:.1f} | {args.queries / seconds:.0f} | {recall(ids, exact):.3f} |", flush=True)
            sensor_recall(n, corpus, queries, hnsw, "hnsw", {"ef_search": 128, "hnsw_m": 32})


def sensor_recall(n: int, corpus: np.ndarray, queries: np.ndarray, index, kind: str, settings: dict) -> None:  # noqa: ANN001
    """Per-sensor search (an ID selector over half the rows, as eval's slices) against the
    exact top-100 of that half."""
    sensors = ["s1" if i % 2 else "s2" for i in range(n)]
    loaded = LoadedIndex(path=None, manifest={"index": {"kind": kind, **settings}}, keys=[str(i) for i in range(n)],  # type: ignore[arg-type]
                         sensors=sensors, embeddings=corpus, faiss_index=index)
    for sensor, offset in (("s1", 1), ("s2", 0)):
        rows = np.arange(offset, n, 2)
        exact = rows[numpy_topk(corpus[rows], queries)]
        run, seconds = timed(search_vectors, loaded, [str(i) for i in range(len(queries))], queries, K, sensor)
        found = np.array([[int(d) for d, _ in run.ranked(q)] for q in run])
        label = f"nprobe {settings['nprobe']}" if kind == "ivf" else f"efSearch {settings['ef_search']}"
        print(f"| {n:,} | {kind.upper()} {label}, {sensor} rows only (rsretrieve search) | - | {len(queries) / seconds:.0f} | "
              f"{recall(found, exact):.3f} |", flush=True)


if __name__ == "__main__":
    main()
