"""Evaluation: ranx (what rsretrieve uses) vs pytrec_eval on 10,000 queries.

    .venv/bin/python benchmarks/evaluation.py [--queries 10000] [--depth 100]

Graded qrels (0-2, ~8 judged docs a query) and runs of `depth` docs. Times one ranx call in
a fresh process (numba kernels loaded from the cache) and a second call, and pytrec_eval;
prints the largest per-query difference of every metric (must be below 1e-6).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rsretrieve.evaluate import score_run

METRICS = {"ndcg@10": "ndcg_cut_10", "ndcg@100": "ndcg_cut_100", "map@100": "map_cut_100", "recall@10": "recall_10",
           "recall@100": "recall_100", "precision@10": "P_10", "mrr": "recip_rank"}


def main() -> None:
    import pytrec_eval

    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--depth", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(2000)]
    qrels, run = {}, {}
    for q in range(args.queries):
        judged = rng.choice(docs, 8, replace=False)
        grades = rng.integers(0, 3, 8)
        grades[0] = max(grades[0], 1)
        qrels[f"q{q}"] = {d: int(g) for d, g in zip(judged, grades)}
        retrieved = list(rng.choice(docs, args.depth - 4, replace=False)) + list(judged[:4])
        run[f"q{q}"] = {d: float(s) for d, s in zip(retrieved, rng.random(args.depth))}
    first = time.perf_counter()
    ours = score_run(qrels, run, list(METRICS))
    first = time.perf_counter() - first
    second = time.perf_counter()
    score_run(qrels, run, list(METRICS))
    second = time.perf_counter() - second
    started = time.perf_counter()
    theirs = pytrec_eval.RelevanceEvaluator(qrels, set(METRICS.values())).evaluate(run)
    trec = time.perf_counter() - started
    print(f"{args.queries} queries x {args.depth} docs, {len(METRICS)} metrics\n")
    print("| tool | seconds |\n|---|---|")
    print(f"| ranx via rsretrieve, first call in the process | {first:.2f} |")
    print(f"| ranx via rsretrieve, second call | {second:.2f} |")
    print(f"| pytrec_eval | {trec:.2f} |\n")
    print("| metric | mean | max abs difference per query |\n|---|---|---|")
    for ours_name, trec_name in METRICS.items():
        diff = max(abs(ours["per_query"][ours_name][q] - theirs[q][trec_name]) for q in qrels)
        print(f"| {ours_name} | {ours['scores'][ours_name]:.4f} | {diff:.1e} |")
        assert diff < 1e-6, ours_name


if __name__ == "__main__":
    main()
