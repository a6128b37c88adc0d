"""Evaluation: slices, diagnostics, saved slice runs, and every printed number equal to a bare
pytrec_eval script on the saved files."""

import json
import shutil

import numpy as np
import pytest

from benchmarks.trec_reference import reference
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.evaluate import (
    DEFAULT_METRICS, Corpus, check_query_ids, evaluate_index, evaluate_saved_run, evaluate_slices,
    filtered_slices, parse_metrics, save_slice_runs, score_run, search_depth,
)
from rsretrieve.datasets.queries import load_qrels
from rsretrieve.runs import Run, read_run, write_run

pytest.importorskip("pytrec_eval")


def test_parse_metrics_and_depth() -> None:
    assert parse_metrics(["ndcg@10,map@100", "mrr"]) == ["ndcg@10", "map@100", "mrr"]
    with pytest.raises(ConfigError, match="unknown metric 'ndgc@10'. Did you mean 'ndcg'"):
        parse_metrics(["ndgc@10"])
    assert search_depth(DEFAULT_METRICS) == 1000
    assert search_depth(["recall@5000"]) == 5000
    assert "ndcg@1000" in DEFAULT_METRICS


def test_unknown_query_ids_in_qrels_name_file_and_line(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "qrels.tsv"
    path.write_text("q1 0 a 1\nq9 0 a 1\n")
    with pytest.raises(DataError, match=r"qrels.tsv:2: unknown query id 'q9' \(not in .*queries.jsonl\)"):
        check_query_ids(load_qrels(path), {"q1": "x"}, path, tmp_path / "queries.jsonl")


def test_score_run_leaves_out_queries_without_a_relevant_document() -> None:
    qrels = {"q1": {"a": 2}, "q2": {"b": 0, "c": -1}, "q3": {"d": 1}}
    scored = score_run(qrels, {"q1": {"a": 1.0}}, ["mrr"])
    assert scored["n_queries"] == 2 and scored["per_query"]["mrr"] == {"q1": 1.0, "q3": 0.0}
    assert scored["scores"]["mrr"] == pytest.approx(0.5)  # q3 is missing from the run: 0, as trec_eval -c


def test_diagnostics_report_what_was_left_out() -> None:
    queries = {"q1": "a", "q2": "b", "q3": "no judgements", "q4": "none relevant"}
    qrels = {"q1": {"a": 2, "b": 1, "gone": 1}, "q2": {"d": 1}, "q4": {"a": 0}}
    corpus = Corpus(dict.fromkeys(["a", "b", "c", "d", "x", "y"], "s2"))
    run = {"q1": {"x": 4.0, "a": 3.0, "c": 2.0, "b": 1.0}, "q2": {"d": 0.9, "y": 0.1}}
    report = evaluate_slices(qrels, queries, {"all": run}, corpus, ["mrr"])
    diag = report["diagnostics"]
    assert diag["queries_without_judgements"] == ["q3"]
    assert diag["judged_docs_not_in_corpus"] == 1 and diag["judged_docs_not_in_corpus_examples"] == ["gone"]
    assert report["results"]["all"]["n_queries"] == 2
    assert report["results"]["all"]["queries_without_relevant"] == ["q4"]


def test_shallow_runs_are_reported_with_metric_and_depth() -> None:
    corpus = Corpus({f"d{i}": "s2" for i in range(20)})
    run = {"q": {f"d{i}": 1.0 - i / 100 for i in range(5)}}
    report = evaluate_slices({"q": {"d1": 1}}, {"q": "t"}, {"all": run}, corpus, ["ndcg@10", "ndcg@5"], corpus_sizes={"all": 20})
    assert report["diagnostics"]["shallow_runs"] == [{"slice": "all", "metric": "ndcg@10", "depth": 5, "documents": 20}]
    full = {"q": {f"d{i}": 1.0 - i / 100 for i in range(20)}}  # the whole slice: not shallow at any cutoff
    report = evaluate_slices({"q": {"d1": 1}}, {"q": "t"}, {"all": full}, corpus, ["ndcg@1000"], corpus_sizes={"all": 20})
    assert report["diagnostics"]["shallow_runs"] == []


def test_a_lone_run_gets_filtered_sensor_columns_never_per_sensor_ones() -> None:
    run = Run.from_dict({"q": {"benv2s1_1": 0.9, "benv2s2_2": 0.8, "mmflood_3": 0.7}})
    qrels = {"q": {"benv2s2_2": 1, "cabuar_4": 1}}
    runs, corpus = filtered_slices(run, qrels)
    assert set(runs) == {"all", "s1-filtered", "s2-filtered"}
    assert [d for d, _ in runs["s1-filtered"].ranked("q")] == ["benv2s1_1", "mmflood_3"]
    report = evaluate_slices(qrels, {"q": "t"}, runs, corpus, ["recall@10"])
    assert report["results"]["all"]["scores"]["recall@10"] == pytest.approx(0.5)
    assert report["results"]["s1-filtered"]["n_queries"] == 0
    plain = filtered_slices(Run.from_dict({"q": {"doc1": 1.0}}), {"q": {"doc1": 1}})[0]
    assert set(plain) == {"all"}  # keys that tell no sensor: no sensor columns at all


@pytest.fixture(scope="module")
def tied_index(index_dir, tmp_path_factory):  # noqa: ANN001, ANN201
    """The test index with many embeddings made identical, so that scores tie heavily."""
    folder = tmp_path_factory.mktemp("tied") / "idx"
    shutil.copytree(index_dir, folder)
    import faiss

    embeddings = np.load(folder / "embeddings.npy")
    embeddings[::2] = embeddings[0]
    embeddings[1::4] = embeddings[1]
    np.save(folder / "embeddings.npy", embeddings)
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(embeddings)
    faiss.write_index(index, str(folder / "index.faiss"))
    return folder


def test_search_breaks_ties_by_the_rule_even_across_the_cutoff(tied_index) -> None:  # noqa: ANN001
    from rsretrieve.index import load_index
    from rsretrieve.search import search_vectors

    index = load_index(tied_index)
    vector = index.embeddings[:1]
    full = search_vectors(index, ["q"], vector, 1000).ranked("q")
    assert len(full) == len(index.keys) and sum(s == full[0][1] for _, s in full) >= 15  # a big tied group on top
    rule = sorted(full, key=lambda hit: (-hit[1], [-b for b in hit[0].encode()] + [1]))
    assert full == rule
    for k in (1, 3, 7):  # the cut falls inside the tied group of identical vectors
        assert search_vectors(index, ["q"], vector, k).ranked("q") == full[:k]


def test_eval_index_numbers_equal_pytrec_eval_on_the_saved_files(tied_index, sample_root, tmp_path) -> None:  # noqa: ANN001
    evaluation = evaluate_index(tied_index)
    saved = save_slice_runs(evaluation.runs, evaluation.corpus, tmp_path / "run.trec", evaluation.report["source"])
    assert [p.name for p in saved] == ["run.trec", "run.s1.trec", "run.s2.trec", "run.corpus.tsv", "run.slices.json"]
    bare = reference(tmp_path / "run.trec", sample_root / "qrels", list(DEFAULT_METRICS))
    assert set(bare) == set(evaluation.report["results"]) == {"all", "s1", "s2"}
    for name, scored in evaluation.report["results"].items():
        for metric, value in scored["scores"].items():
            assert value == pytest.approx(bare[name][metric], abs=1e-6), (name, metric)
    # eval --run on the saved files reproduces the eval --index table exactly, with either backend
    for backend in ("trec_eval", "ranx"):
        again = evaluate_saved_run(tmp_path / "run.trec", sample_root / "queries.jsonl", sample_root / "qrels", backend=backend)
        for name, scored in evaluation.report["results"].items():
            for metric, value in scored["scores"].items():
                assert again["results"][name]["scores"][metric] == pytest.approx(value, abs=1e-9), (backend, name, metric)
    assert again["source"]["slices"] == "saved"


def test_saved_slices_are_checked_before_use(index_dir, sample_root, tmp_path) -> None:  # noqa: ANN001
    evaluation = evaluate_index(index_dir, metrics=["ndcg@10"])
    save_slice_runs(evaluation.runs, evaluation.corpus, tmp_path / "run.json", {})
    write_run(read_run(tmp_path / "run.s1.json").truncate(2), tmp_path / "run.s1.json")
    with pytest.raises(DataError, match=r"run.s1.json changed since run.slices.json was written"):
        evaluate_saved_run(tmp_path / "run.json", sample_root / "queries.jsonl", sample_root / "qrels")
    (tmp_path / "run.s1.json").unlink()
    with pytest.raises(DataError, match=r"run.slices.json lists run.s1.json, which is missing"):
        evaluate_saved_run(tmp_path / "run.json", sample_root / "queries.jsonl", sample_root / "qrels")
    entry = json.loads((tmp_path / "run.slices.json").read_text())
    entry["slices"]["s1"]["file"] = "../elsewhere.json"
    (tmp_path / "run.slices.json").write_text(json.dumps(entry))
    with pytest.raises(DataError, match=r"is not a file beside it"):
        evaluate_saved_run(tmp_path / "run.json", sample_root / "queries.jsonl", sample_root / "qrels")


def test_evaluate_index_end_to_end(index_dir, sample_root) -> None:  # noqa: ANN001
    evaluation = evaluate_index(index_dir, metrics=["ndcg@10", "recall@1000"], backend="ranx")
    report = evaluation.report
    assert set(report["results"]) == {"all", "s1", "s2"} and report["backend"] == "ranx"
    assert report["source"]["qrels"] == str(sample_root / "qrels")
    for scored in report["results"].values():
        assert scored["scores"]["recall@1000"] == pytest.approx(1.0)  # depth beyond the corpus: everything
        assert 0 <= scored["scores"]["ndcg@10"] <= 1
    assert report["diagnostics"]["judged_docs_not_in_corpus"] == 0
    assert report["diagnostics"]["shallow_runs"] == []
    assert len(evaluation.runs["all"].ranked(next(iter(evaluation.runs["all"])))) == report["source"]["counts"]["total"]


def test_unknown_judged_document_names_the_qrels_line(index_dir, sample_root, tmp_path) -> None:  # noqa: ANN001
    qrels = tmp_path / "qrels.tsv"
    lines = (sample_root / "qrels" / "test.tsv").read_text().splitlines()
    qid = lines[1].split()[0]
    qrels.write_text("\n".join([*lines[:3], f"{qid}\tbenv2s2_no_such_patch\t1", *lines[3:]]) + "\n")
    with pytest.raises(DataError, match=r"qrels.tsv:4: unknown document id 'benv2s2_no_such_patch'"):
        evaluate_index(index_dir, qrels_path=qrels)
