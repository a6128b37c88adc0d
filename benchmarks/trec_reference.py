"""The bare reference: pytrec_eval (trec_eval) on rsretrieve's saved files, importing nothing
from rsretrieve, so that anyone can check every number `rsretrieve eval` prints.

    python benchmarks/trec_reference.py RUN.trec QRELS [-m ndcg@10,map@100,...]

RUN is a TREC run. When `rsretrieve eval --index --save-run RUN` wrote it, RUN-stem.slices.json
names the run of every slice and the corpus (key<TAB>sensor lines); each slice is scored
against the qrels judgements of documents in that slice's part of the corpus. QRELS is a TREC
(qid iter doc rel) or BEIR TSV (query-id corpus-id score, optional header) file, or a folder
of them. A slice's mean is taken over the queries with a relevant (grade >= 1) judgement in
it; a query missing from the run scores 0 (trec_eval -c).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MEASURES = {"ndcg": "ndcg_cut", "map": "map_cut", "recall": "recall", "precision": "P"}
DEFAULT = "map@100,ndcg@10,ndcg@100,ndcg@1000,recall@10,recall@100,precision@10,mrr"


def read_trec_run(path: Path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if parts:
                run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
    return run


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    files = sorted(p for p in path.iterdir() if not p.name.startswith(".")) if path.is_dir() else [path]
    qrels: dict[str, dict[str, int]] = {}
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 4:
                qrels.setdefault(parts[0], {})[parts[2]] = int(parts[3])
            elif len(parts) == 3 and parts[2].lstrip("-").isdigit():
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return qrels


def slices_of(run_path: Path) -> tuple[dict[str, Path], dict[str, str] | None]:
    """Slice name -> run file, and the corpus (key -> sensor) when they were saved."""
    sidecar = run_path.with_name(run_path.name.removesuffix(run_path.suffix) + ".slices.json")
    if not sidecar.is_file():
        return {"all": run_path}, None
    entry = json.loads(sidecar.read_text())
    files = {name: run_path.parent / item["file"] for name, item in entry["slices"].items()}
    corpus = {}
    for line in (run_path.parent / entry["corpus"]["file"]).read_text(encoding="utf-8").splitlines():
        key, sensor = line.split("\t")
        corpus[key] = sensor
    return files, corpus


def score(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]], metrics: list[str]) -> dict[str, float]:
    import pytrec_eval

    scored = sorted(q for q, docs in qrels.items() if any(r > 0 for r in docs.values()))
    if not scored:
        return {}
    measures = set()
    for metric in metrics:
        name, _, k = metric.partition("@")
        measures.add("recip_rank" if name == "mrr" else f"{MEASURES[name]}.{k}")
    per_query = pytrec_eval.RelevanceEvaluator({q: qrels[q] for q in scored}, measures).evaluate(
        {q: run[q] for q in scored if q in run}
    )
    out = {}
    for metric in metrics:
        name, _, k = metric.partition("@")
        key = "recip_rank" if name == "mrr" else f"{MEASURES[name]}_{k}"
        out[metric] = sum(per_query.get(q, {}).get(key, 0.0) for q in scored) / len(scored)
    return out


def reference(run_path: Path, qrels_path: Path, metrics: list[str]) -> dict[str, dict[str, float]]:
    files, corpus = slices_of(run_path)
    qrels = read_qrels(qrels_path)
    results = {}
    for name, file in files.items():
        if corpus is None:
            judged = qrels
        else:
            def inside(doc: str) -> bool:
                return doc in corpus and (name == "all" or corpus[doc] == name)

            judged = {q: {d: r for d, r in docs.items() if inside(d)} for q, docs in qrels.items()}
        results[name] = score(read_trec_run(file), judged, metrics)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("qrels", type=Path)
    parser.add_argument("-m", "--metrics", default=DEFAULT)
    args = parser.parse_args()
    json.dump(reference(args.run, args.qrels, args.metrics.split(",")), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
