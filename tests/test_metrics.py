"""Every metric of both backends equals pytrec_eval (trec_eval) query by query."""

import math

import numpy as np
import pytest

from rsretrieve.errors import ConfigError
from rsretrieve.metrics import METRIC_NAMES, parse_metric, per_query
from rsretrieve.runs import Run

pytrec_eval = pytest.importorskip("pytrec_eval")
CUTOFFS = (1, 3, 10, 100)
TREC = {"ndcg": "ndcg_cut", "map": "map_cut", "precision": "P", "recall": "recall", "hit_rate": "success"}


def tricky_topics(seed: int = 0) -> tuple[dict, dict, list[str]]:
    """Graded and negative grades, heavy score ties, a query missing from the run, a query
    with only non-relevant judgements, runs deeper than the 50-document corpus."""
    rng = np.random.default_rng(seed)
    docs = [f"d{i:02d}" for i in range(50)]
    qrels = {f"q{q}": {str(d): int(rng.integers(-1, 4)) for d in rng.choice(docs, 12, replace=False)} for q in range(30)}
    qrels["q-nonrel"] = {"d01": 0, "d02": -1}
    run = {q: {str(d): float(rng.integers(0, 4)) for d in rng.choice(docs, int(rng.integers(1, 50)), replace=False)} for q in qrels}
    run.pop("q3")
    run["q4"] = {d: 0.5 for d in docs}  # every score tied
    qids = sorted(q for q, j in qrels.items() if any(r > 0 for r in j.values()))
    return qrels, run, qids


def reference(qrels: dict, run: dict, qids: list[str], metric: str) -> np.ndarray:
    """pytrec_eval per query (0 for a query missing from the run), by the definitions of metrics.py."""
    name, _, k = metric.partition("@")
    if name == "ndcg_burges":
        qrels = {q: {d: (2**r - 1 if r > 0 else r) for d, r in j.items()} for q, j in qrels.items()}
    if name == "mrr" and k:
        # trec_eval's own top k: its ranking is score descending, ties by doc id descending
        run = {q: dict(sorted(h.items(), key=lambda kv: (-kv[1], [-ord(c) for c in kv[0]]))[: int(k)]) for q, h in run.items()}
    measure = {"mrr": "recip_rank", "r-precision": "Rprec", "ndcg_burges": "ndcg_cut", "f1": "P", "hits": "P"}.get(name, TREC.get(name))
    if not k:
        measure = {"ndcg": "ndcg", "ndcg_burges": "ndcg", "map": "map", "precision": "set_P", "recall": "set_recall",
                   "f1": "set_F", "hits": "num_rel_ret", "hit_rate": "num_rel_ret"}.get(name, measure)
    asked = {measure if not k or name in ("mrr",) else f"{measure}.{k}"}
    if name == "f1" and k:
        asked |= {f"recall.{k}"}
    values = pytrec_eval.RelevanceEvaluator({q: qrels[q] for q in qids}, asked).evaluate({q: run[q] for q in qids if q in run})
    out = []
    for q in qids:
        got = values.get(q)
        if got is None:
            out.append(0.0)
        elif name == "f1" and k:
            p, r = got[f"P_{k}"], got[f"recall_{k}"]
            out.append(2 * p * r / (p + r) if p + r else 0.0)
        elif name == "hits" and k:
            out.append(got[f"P_{k}"] * int(k))
        elif name == "hit_rate" and not k:
            out.append(float(got["num_rel_ret"] > 0))
        else:
            out.append(got[measure if not k or name == "mrr" else f"{measure}_{k}"])
    return np.array(out)


ALL_METRICS = [f"{m}@{k}" for m in METRIC_NAMES if m != "r-precision" for k in CUTOFFS] + list(METRIC_NAMES)


@pytest.mark.parametrize("backend", ["trec_eval", "ranx"])
def test_every_metric_equals_pytrec_eval(backend: str) -> None:
    qrels, run, qids = tricky_topics()
    ours = per_query(qrels, Run.from_dict(run), ALL_METRICS, qids, backend)
    for metric in ALL_METRICS:
        np.testing.assert_allclose(ours[metric], reference(qrels, run, qids, metric), atol=1e-6, err_msg=metric)


def test_metric_names() -> None:
    assert parse_metric("f1@5").label == "f1@5" and parse_metric("r-precision").k is None
    with pytest.raises(ConfigError, match="unknown metric 'ndgc@10'. Did you mean 'ndcg'"):
        parse_metric("ndgc@10")
    with pytest.raises(ConfigError, match="cutoff must be at least 1"):
        parse_metric("ndcg@0")
    with pytest.raises(ConfigError, match="r-precision takes no cutoff"):
        parse_metric("r-precision@5")


def test_hand_computed_values() -> None:
    qrels = {"q1": {"a": 2, "b": 1, "c": 0}, "q2": {"d": 1}}
    run = Run.from_dict({"q1": {"x": 4.0, "a": 3.0, "c": 2.0, "b": 1.0}, "q2": {"d": 0.9, "y": 0.1}})
    got = {m: v.mean() for m, v in per_query(qrels, run, ["precision@2", "recall@2", "mrr", "map", "ndcg@4"], ["q1", "q2"]).items()}
    assert got["precision@2"] == pytest.approx(0.5)
    assert got["recall@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["mrr"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["map"] == pytest.approx(((1 / 2 + 2 / 4) / 2 + 1) / 2)
    dcg, idcg = 2 / math.log2(3) + 1 / math.log2(5), 2 + 1 / math.log2(3)
    assert got["ndcg@4"] == pytest.approx((dcg / idcg + 1) / 2)
