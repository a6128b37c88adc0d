"""Metrics against hand-computed values and pytrec_eval; diagnostics; per-sensor slices."""

import math

import numpy as np
import pytest

from rsretrieve.errors import ConfigError, DataError
from rsretrieve.evaluate import (
    DEFAULT_METRICS, check_query_ids, evaluate_index, evaluate_slices, parse_metrics,
    score_run, search_depth, slice_saved_run,
)

QRELS = {"q1": {"a": 2, "b": 1, "c": 0}, "q2": {"d": 1}}
RUN = {"q1": {"x": 4.0, "a": 3.0, "c": 2.0, "b": 1.0}, "q2": {"d": 0.9, "y": 0.1}}


def test_metrics_match_hand_computed_values() -> None:
    scores = score_run(QRELS, RUN, ["precision@2", "recall@2", "mrr", "map", "ndcg@4"])["scores"]
    # q1 ranks x, a(2), c(0), b(1); q2 ranks d(1) first.
    assert scores["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert scores["recall@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert scores["mrr"] == pytest.approx((1 / 2 + 1) / 2)
    assert scores["map"] == pytest.approx(((1 / 2 + 2 / 4) / 2 + 1) / 2)
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    idcg = 2 + 1 / math.log2(3)
    assert scores["ndcg@4"] == pytest.approx((dcg / idcg + 1) / 2)


def test_metrics_agree_with_pytrec_eval_on_random_runs() -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(60)]
    qrels = {f"q{q}": {d: int(rng.integers(0, 3)) for d in rng.choice(docs, 12, replace=False)} for q in range(25)}
    qrels = {q: j for q, j in qrels.items() if any(r > 0 for r in j.values())}
    run = {q: {d: float(s) for d, s in zip(rng.choice(docs, 40, replace=False), rng.random(40))} for q in qrels}
    ours = score_run(qrels, run, ["ndcg@10", "map@100", "recall@10", "recall@100", "precision@10", "mrr"])["per_query"]
    names = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "recall@100": "recall_100",
             "precision@10": "P_10", "mrr": "recip_rank", "map@100": "map_cut_100"}
    theirs = pytrec_eval.RelevanceEvaluator(qrels, set(names.values())).evaluate(run)
    for metric, trec_name in names.items():
        for qid in qrels:
            assert ours[metric][qid] == pytest.approx(theirs[qid][trec_name], abs=1e-6), (metric, qid)


def test_parse_metrics_and_depth() -> None:
    assert parse_metrics(["ndcg@10,map@100", "mrr"]) == ["ndcg@10", "map@100", "mrr"]
    with pytest.raises(ConfigError, match="unknown metric 'ndgc@10'. Did you mean 'ndcg'"):
        parse_metrics(["ndgc@10"])
    with pytest.raises(ConfigError, match="cutoff must be at least 1"):
        parse_metrics(["ndcg@0"])
    assert search_depth(DEFAULT_METRICS) == 1000
    assert search_depth(["recall@5000"]) == 5000
    assert "ndcg@1000" in DEFAULT_METRICS


def test_unknown_query_ids_in_qrels_are_errors(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match="qrels.tsv: unknown query id 'q9'"):
        check_query_ids({"q9": {"a": 1}}, {"q1": "x"}, tmp_path / "qrels.tsv", tmp_path / "queries.jsonl")


def test_diagnostics_report_what_was_left_out() -> None:
    queries = {"q1": "a", "q2": "b", "q3": "no judgements"}
    qrels = {"q1": {"a": 2, "b": 1, "gone": 1}, "q2": {"d": 1}}
    corpora = {"all": {"a", "b", "c", "d", "x", "y"}}
    report = evaluate_slices(qrels, queries, {"all": RUN}, corpora, ["mrr"])
    diag = report["diagnostics"]
    assert diag["queries_without_judgements"] == ["q3"]
    assert diag["judged_docs_not_in_corpus"] == 1 and diag["judged_docs_not_in_corpus_examples"] == ["gone"]
    assert report["results"]["all"]["n_queries"] == 2


def test_saved_run_slices_by_sensor_from_keys() -> None:
    run = {"q": {"benv2s1_1": 0.9, "benv2s2_2": 0.8, "mmflood_3": 0.7}}
    qrels = {"q": {"benv2s2_2": 1, "cabuar_4": 1}}
    runs, corpora = slice_saved_run(run, qrels)
    assert list(runs["s1"]["q"]) == ["benv2s1_1", "mmflood_3"]
    assert list(runs["s2"]["q"]) == ["benv2s2_2"]
    assert corpora["s2"] == {"benv2s2_2", "cabuar_4"}  # unretrieved judged docs still count
    report = evaluate_slices(qrels, {"q": "t"}, runs, corpora, ["recall@10"])
    assert report["results"]["all"]["scores"]["recall@10"] == pytest.approx(0.5)
    assert report["results"]["s1"]["n_queries"] == 0
    assert report["results"]["s1"]["queries_without_relevant"] == ["q"]


def test_evaluate_index_end_to_end(index_dir, sample_root) -> None:  # noqa: ANN001
    report, runs = evaluate_index(index_dir, metrics=["ndcg@10", "recall@1000"])
    assert set(report["results"]) == {"all", "s1", "s2"}
    assert report["source"]["qrels"] == str(sample_root / "qrels")
    for scored in report["results"].values():
        # recall over the whole corpus at depth 1000 > corpus size is exactly 1
        assert scored["scores"]["recall@1000"] == pytest.approx(1.0)
        assert 0 <= scored["scores"]["ndcg@10"] <= 1
    assert report["diagnostics"]["judged_docs_not_in_corpus"] == 0
    assert len(next(iter(runs["all"].values()))) == report["source"]["counts"]["total"]
    assert set(runs) == {"all", "s1", "s2"}
