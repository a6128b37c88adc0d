"""Score runs against qrels with ranx, overall and per sensor, and say what was left out.

Conventions: only judgements with relevance > 0 count as relevant; queries with no
relevant document in a slice are reported and left out of that slice's means; judged
documents that are not in the indexed corpus are dropped from the qrels and counted.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rsretrieve.datasets.crisislandmark import QRELS_DIR, QUERIES_FILE
from rsretrieve.datasets.queries import Qrels, load_qrels, load_queries, load_query_fields
from rsretrieve.datasets.sensors import sensor_of_key
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.registry import did_you_mean
from rsretrieve.encoders import EncoderSpec
from rsretrieve.index import load_index
from rsretrieve.search import Run, encode_queries, encoder_for_index, search_vectors

DEFAULT_METRICS: tuple[str, ...] = (
    "map@100", "ndcg@10", "ndcg@100", "ndcg@1000", "recall@10", "recall@100", "precision@10", "mrr",
)
RANX_METRICS = ("hits", "hit_rate", "precision", "recall", "f1", "r-precision", "mrr", "map", "ndcg", "ndcg_burges")
DEFAULT_DEPTH = 1000
_METRIC = re.compile(r"^(?P<name>[a-z_\-]+)(@(?P<k>\d+))?$")


def parse_metrics(names: Sequence[str]) -> list[str]:
    """Validate metric names such as ``ndcg@10`` or ``mrr`` before any work is done."""
    out: list[str] = []
    for raw in names:
        for name in filter(None, (part.strip() for part in raw.split(","))):
            match = _METRIC.match(name)
            base = match.group("name") if match else name
            if base not in RANX_METRICS:
                raise ConfigError(
                    f"unknown metric '{name}'.{did_you_mean(base, RANX_METRICS)} "
                    f"Known: {', '.join(RANX_METRICS)} (with an optional @k cutoff)"
                )
            if match and match.group("k") is not None and int(match.group("k")) < 1:
                raise ConfigError(f"metric '{name}': the cutoff must be at least 1")
            out.append(name)
    if not out:
        raise ConfigError("no metrics given")
    return out


def search_depth(metrics: Sequence[str]) -> int:
    """Run depth that every cutoff needs (metrics without a cutoff get DEFAULT_DEPTH)."""
    cutoffs = [int(m.split("@")[1]) for m in metrics if "@" in m]
    return max([DEFAULT_DEPTH, *cutoffs])


def check_query_ids(qrels: Qrels, queries: Mapping[str, str], qrels_path: Path, queries_path: Path) -> None:
    unknown = sorted(set(qrels) - set(queries))
    if unknown:
        shown = ", ".join(f"'{q}'" for q in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise DataError(f"{qrels_path}: unknown query id {shown}{more} (not in {queries_path})")


def ranx_inputs(qrels: Qrels, run: Run, name: str | None = None) -> tuple[Any, Any] | None:
    """ranx Qrels/Run over the queries with a relevant document (None if there is none)."""
    from ranx import Qrels as RanxQrels
    from ranx import Run as RanxRun

    relevant = {q: {d: r for d, r in docs.items() if r > 0} for q, docs in qrels.items()}
    evaluated = sorted(q for q, docs in relevant.items() if docs)
    if not evaluated:
        return None
    return RanxQrels({q: relevant[q] for q in evaluated}), RanxRun({q: dict(run.get(q, {})) for q in evaluated}, name=name)


def score_run(qrels: Qrels, run: Run, metrics: Sequence[str]) -> dict[str, Any]:
    """Mean and per-query scores over the queries that have a relevant document."""
    from ranx import evaluate

    inputs = ranx_inputs(qrels, run)
    if inputs is None:
        return {"n_queries": 0, "scores": {m: None for m in metrics}, "per_query": {}}
    ranx_qrels, ranx_run = inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba type-safety chatter from ranx kernels
        means = evaluate(ranx_qrels, ranx_run, list(metrics))
    if len(metrics) == 1:
        means = {metrics[0]: means}
    per_query = {m: {q: float(v) for q, v in ranx_run.scores[m].items()} for m in metrics}
    return {
        "n_queries": len(ranx_run.keys()),
        "scores": {m: float(means[m]) for m in metrics},
        "per_query": per_query,
    }


def restrict(qrels: Qrels, corpus: set[str]) -> tuple[Qrels, int]:
    """Drop judgements of documents outside ``corpus``; return how many were dropped."""
    kept = {q: {d: r for d, r in docs.items() if d in corpus} for q, docs in qrels.items()}
    dropped = sum(len(docs) for docs in qrels.values()) - sum(len(docs) for docs in kept.values())
    return kept, dropped


def evaluate_slices(
    qrels: Qrels,
    queries: Mapping[str, str],
    runs: Mapping[str, Run],
    corpora: Mapping[str, set[str]],
    metrics: Sequence[str],
) -> dict[str, Any]:
    """Score each slice's run (e.g. ``all``, ``s2``, ``s1``) against qrels restricted to it."""
    started = time.perf_counter()
    results: dict[str, Any] = {}
    per_query: dict[str, Any] = {}
    for name, run in runs.items():
        restricted, _ = restrict(qrels, corpora[name])
        scored = score_run(restricted, run, metrics)
        per_query[name] = scored.pop("per_query")
        scored["queries_without_relevant"] = sorted(
            q for q, docs in restricted.items() if not any(r > 0 for r in docs.values())
        )
        results[name] = scored
    everything = set().union(*corpora.values())
    absent = sorted({d for docs in qrels.values() for d in docs if d not in everything})
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metrics": list(metrics),
        "results": results,
        "diagnostics": {
            "n_queries": len(queries),
            "queries_without_judgements": sorted(set(queries) - set(qrels)),
            "judged_docs_not_in_corpus": len(absent),
            "judged_docs_not_in_corpus_examples": absent[:10],
        },
        "per_query": per_query,
        "timings": {"score_s": round(time.perf_counter() - started, 3)},
    }


def slice_saved_run(run: Run, qrels: Qrels) -> tuple[dict[str, Run], dict[str, set[str]]]:
    """Per-sensor views of a saved run, ranks kept, sensor told by each document key.

    A saved run does not say what its corpus was, so every judged document is assumed
    to be in it (pass the index instead to score against its real corpus).
    """
    corpus = {d for docs in run.values() for d in docs} | {d for docs in qrels.values() for d in docs}
    runs: dict[str, Run] = {"all": run}
    corpora: dict[str, set[str]] = {"all": corpus}
    for doc in sorted(corpus):
        corpora.setdefault(sensor_of_key(doc), set()).add(doc)
    for sensor, docs in corpora.items():
        if sensor != "all":
            runs[sensor] = {q: {d: s for d, s in hits.items() if d in docs} for q, hits in run.items()}
    return runs, corpora


def group_scores(
    per_query: Mapping[str, Mapping[str, float]], attributes: Mapping[str, Mapping[str, Any]], fields: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Mean per-query scores grouped by query attributes (e.g. country, season, climate zone);
    queries without a value for a field are left out of that field's groups."""
    out: dict[str, dict[str, Any]] = {}
    for field in fields:
        groups: dict[str, list[str]] = {}
        for qid in next(iter(per_query.values()), {}):
            value = attributes.get(qid, {}).get(field)
            if value is not None:
                groups.setdefault(str(value), []).append(qid)
        out[field] = {
            value: {"n_queries": len(qids),
                    "scores": {m: float(sum(per_query[m][q] for q in qids) / len(qids)) for m in per_query}}
            for value, qids in sorted(groups.items())
        }
    return out


def load_topics(queries_path: Path, qrels_path: Path) -> tuple[dict[str, str], Qrels]:
    """Queries and qrels, checked against each other (unknown query ids are errors)."""
    queries = load_queries(queries_path)
    qrels = load_qrels(qrels_path)
    check_query_ids(qrels, queries, qrels_path, queries_path)
    return queries, qrels


def evaluate_index(
    index_dir: Path,
    qrels_path: Path | None = None,
    queries_path: Path | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    k: int | None = None,
    requested: EncoderSpec | None = None,
    device: str | None = None,
    group_by: Sequence[str] = (),
) -> tuple[dict[str, Any], dict[str, Run]]:
    """Search every query over the index (all, then each sensor) and score the runs.

    Queries and qrels default to the ones of the dataset the index was built from.
    Returns the report and the runs by slice (``all``, ``s1``, ``s2``).
    """
    metrics = parse_metrics(metrics)
    index = load_index(index_dir)
    root = Path(index.manifest["dataset"]["path"])
    queries_path = Path(queries_path or root / QUERIES_FILE)
    qrels_path = Path(qrels_path or root / QRELS_DIR)
    queries, qrels = load_topics(queries_path, qrels_path)
    depth = k or search_depth(metrics)
    encoder = encoder_for_index(index, requested, device)
    started = time.perf_counter()
    qids, vectors = encode_queries(encoder, queries)
    runs = {"all": search_vectors(index, qids, vectors, depth)}
    corpora = {"all": set(index.keys)}
    for sensor in sorted(set(index.sensors)):
        runs[sensor] = search_vectors(index, qids, vectors, depth, sensor)
        corpora[sensor] = {key for key, s in zip(index.keys, index.sensors) if s == sensor}
    search_seconds = time.perf_counter() - started
    report = evaluate_slices(qrels, queries, runs, corpora, metrics)
    report["timings"]["search_s"] = round(search_seconds, 3)
    manifest = index.manifest
    report["source"] = {
        "index": str(Path(index_dir).resolve()),
        "queries": str(queries_path),
        "qrels": str(qrels_path),
        "depth": depth,
        "encoder": manifest["encoder"],
        "adapters": manifest["adapters"],
        "dataset": manifest["dataset"],
        "counts": manifest["counts"],
    }
    report["versions"] = manifest["versions"]
    if group_by:
        fields = load_query_fields(queries_path, group_by)
        report["groups"] = group_scores(report["per_query"]["all"], fields, group_by)
    return report, runs


def evaluate_saved_run(
    run: Run, queries_path: Path, qrels_path: Path, metrics: Sequence[str] = DEFAULT_METRICS
) -> dict[str, Any]:
    """Score a run file without any model (no torch import), sliced by sensor."""
    metrics = parse_metrics(metrics)
    queries, qrels = load_topics(Path(queries_path), Path(qrels_path))
    unknown = sorted(set(run) - set(queries))
    if unknown:
        raise DataError(f"run has query id '{unknown[0]}' that is not in {queries_path}")
    runs, corpora = slice_saved_run(run, qrels)
    report = evaluate_slices(qrels, queries, runs, corpora, metrics)
    report["source"] = {"queries": str(queries_path), "qrels": str(qrels_path)}
    return report
