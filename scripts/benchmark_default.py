"""Benchmark: is the shipped default model far above chance on the embedded sample?

    .venv/bin/python scripts/benchmark_default.py

Prints nDCG@10 and MAP@100 on the corpus (test) split, overall and per sensor, for
(a) a random ranking (mean of 20 seeded shuffles), (b1) rsretrieve-tiny, a random-initialised
open_clip ViT with rgb/sar adapters, (b2) the default architecture untrained (random towers,
same MiniLM text encoder), (c) the shipped default model; then the same for paraphrased
queries whose words are not in the training templates.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.datasets.queries import load_qrels, load_queries
from rsretrieve.datasets.fixtures.crisislandmark import ensure_default_sample
from rsretrieve.embeddings import build_pipeline
from rsretrieve.encoders import EncoderSpec
from rsretrieve.encoders.trained import DEFAULT_MODEL_DIR, DualEncoder, read_model_config, save_model
from rsretrieve.evaluate import Corpus, evaluate_index, evaluate_slices
from rsretrieve.index import build_index

METRICS = ["ndcg@10", "map@100"]
PARAPHRASES = {
    "water": "lakes, rivers and the open sea",
    "trees": "dense woodland with a closed canopy",
    "crops": "farmland with cultivated fields",
    "shrub and scrub": "bushes and low woody plants",
    "grass": "meadows and pastures",
    "built": "a town with houses and roads",
    "flooded vegetation": "marshes and wetlands",
    "bare": "exposed soil and rock without plants",
    "snow and ice": "glaciers and snowy mountains",
    "flooded area": "areas under water after heavy rain",
    "earthquake damage": "buildings destroyed by a quake",
    "burned area": "land scorched by a wildfire",
}


def random_ranking(corpus: CrisisLandMark, queries: dict[str, str], qrels: dict, seeds: int = 20) -> tuple[dict, dict]:
    """Mean scores per slice, and mean per-query ndcg@10 over ``all``, of seeded shuffles."""
    keys = [s.key for s in corpus.samples]
    sensors = {s.key: s.sensor for s in corpus.samples}
    totals: dict[str, dict[str, list[float]]] = {}
    per_query: dict[str, list[float]] = {}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        run = {q: {k: float(v) for k, v in zip(keys, rng.random(len(keys)))} for q in queries}
        runs = {"all": run}
        for sensor in ("s1", "s2"):  # a random ranking of a sub-corpus is the filtered random ranking
            runs[sensor] = {q: {k: v for k, v in docs.items() if sensors[k] == sensor} for q, docs in run.items()}
        report = evaluate_slices(qrels, queries, runs, Corpus(sensors), METRICS)
        for name, scored in report["results"].items():
            for metric, value in scored["scores"].items():
                totals.setdefault(name, {}).setdefault(metric, []).append(value)
        for qid, value in report["per_query"]["all"]["ndcg@10"].items():
            per_query.setdefault(qid, []).append(value)
    means = {name: {m: float(np.mean(v)) for m, v in metrics.items()} for name, metrics in totals.items()}
    return means, {q: float(np.mean(v)) for q, v in per_query.items()}


def scores_of(report: dict) -> dict:
    return {name: scored["scores"] for name, scored in report["results"].items()}


def row(name: str, scores: dict) -> str:
    cells = [f"{scores[s][m]:.4f}" for s in ("all", "s1", "s2") for m in METRICS]
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = ensure_default_sample()
    corpus = CrisisLandMark(root)
    queries, qrels = load_queries(root / "queries.jsonl"), load_qrels(root / "qrels")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        untrained = tmp / "untrained"
        config, _ = read_model_config(DEFAULT_MODEL_DIR)
        torch.manual_seed(0)  # the initialisation training starts from (TrainConfig.seed)
        save_model(DualEncoder(config), untrained, {"note": "random initialisation, seed 0"})
        para_queries = tmp / "paraphrases.jsonl"
        para_queries.write_text("".join(json.dumps({"_id": f"q-{c.replace(' ', '-')}", "text": t}) + "\n" for c, t in PARAPHRASES.items()))
        methods = {
            "(b1) rsretrieve-tiny, random init": EncoderSpec("open_clip", "rsretrieve-tiny", None, 0),
            "(b2) default architecture, untrained": EncoderSpec("rsretrieve", str(untrained)),
            "(c) shipped default model": EncoderSpec(),
        }
        header = "| method | all ndcg@10 | all map@100 | S1 ndcg@10 | S1 map@100 | S2 ndcg@10 | S2 map@100 |\n|---|---|---|---|---|---|---|"
        label_rows = [row("(a) random ranking", random_ranking(corpus, queries, qrels)[0])]
        chance, chance_per_query = random_ranking(corpus, load_queries(para_queries), qrels)
        para_rows = [row("(a) random ranking", chance)]
        per_query = {}
        for i, (name, spec) in enumerate(methods.items()):
            index_dir = tmp / f"index-{i}"
            build_index(corpus, build_pipeline(spec, sensors=corpus.sensors), index_dir)
            report = evaluate_index(index_dir, metrics=METRICS).report
            label_rows.append(row(name, scores_of(report)))
            para = evaluate_index(index_dir, queries_path=para_queries, metrics=METRICS).report
            para_rows.append(row(name, scores_of(para)))
            per_query[name] = para["per_query"]["all"]["ndcg@10"]
    print(f"Corpus: embedded sample test split, {len(corpus.samples)} samples, {len(queries)} label queries\n")
    print("Label queries ('satellite image of <class>'):\n")
    print("\n".join([header, *label_rows]))
    print("\nParaphrased queries (words not in the training templates):\n")
    print("\n".join([header, *para_rows]))
    print("\nPer paraphrase, ndcg@10 of (c) vs (b2) and chance (a):\n")
    print("| query | (c) default | (b2) untrained | (a) chance |\n|---|---|---|---|")
    names = list(methods)
    for cls, text in PARAPHRASES.items():
        qid = f"q-{cls.replace(' ', '-')}"
        if qid in per_query[names[2]]:
            print(f"| {text} ({cls}) | {per_query[names[2]][qid]:.4f} | {per_query[names[1]][qid]:.4f} "
                  f"| {chance_per_query[qid]:.4f} |")


if __name__ == "__main__":
    main()
