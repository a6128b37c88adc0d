"""Runs: the ranking rule (trec_eval's), exact run files, and bad run files named by line."""

import json

import numpy as np
import pytest

from rsretrieve.errors import DataError
from rsretrieve.runs import Run, read_run, write_run

pytrec_eval = pytest.importorskip("pytrec_eval")


def trec_rank(run: dict[str, float], doc: str) -> int:
    """The rank trec_eval gives ``doc`` in ``run`` (via reciprocal rank with it as the only relevant doc)."""
    measured = pytrec_eval.RelevanceEvaluator({"q": {doc: 1}}, {"recip_rank"}).evaluate({"q": run})
    return round(1 / measured["q"]["recip_rank"])


def test_ties_are_ranked_as_trec_eval_ranks_them() -> None:
    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in rng.permutation(30)] + ["B", "b", "a", "é", "Z9"]
    scores = {d: float(rng.integers(0, 4)) for d in docs}
    ranked = [d for d, _ in Run.from_dict({"q": scores}).ranked("q")]
    assert [trec_rank(scores, d) for d in ranked] == list(range(1, len(docs) + 1))


@pytest.mark.parametrize("name", ["run.trec", "run.json"])
def test_run_files_keep_full_precision_and_the_ranking(tmp_path, name: str) -> None:  # noqa: ANN001
    # float32 scores that 6 decimals would tie
    scores = np.float32([0.81234561, 0.81234567, 0.8123457, 0.5, 0.5]).astype(float)
    run = {"q1": dict(zip(["a", "b", "c", "d", "e"], scores)), "q2": {"c": 0.25}}
    write_run(run, tmp_path / name)
    back = read_run(tmp_path / name)
    assert back.to_dict() == Run.from_dict(run).to_dict()
    assert back.ranked("q1") == [("c", scores[2]), ("b", scores[1]), ("a", scores[0]), ("e", 0.5), ("d", 0.5)]


def test_trec_lines_are_written_in_rank_order(tmp_path) -> None:  # noqa: ANN001
    write_run({"q": {"b": 0.1, "a": 0.9, "c": 0.1}}, tmp_path / "r.txt", tag="x")
    assert (tmp_path / "r.txt").read_text().splitlines() == ["q Q0 a 1 0.9 x", "q Q0 c 2 0.1 x", "q Q0 b 3 0.1 x"]


def test_truncate_and_keep_documents_follow_the_ranking() -> None:
    run = Run.from_dict({"q": {"a": 1.0, "b": 3.0, "c": 2.0}, "empty": {}, "r": {"a": 5.0}})
    assert run.truncate(2).to_dict() == {"q": {"b": 3.0, "c": 2.0}, "empty": {}, "r": {"a": 5.0}}
    keep = np.array([name != "b" for name in run.names])
    assert run.keep_documents(keep).to_dict() == {"q": {"c": 2.0, "a": 1.0}, "empty": {}, "r": {"a": 5.0}}
    assert list(run.depths()) == [3, 0, 1] and "empty" in run and "zz" not in run


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("q Q0 a 1 0.5 x\nq Q0 b 2\n", r"r.trec:2: a TREC run line has 6 fields .* got 4"),
        ("q Q0 a 1 0.5 x\nq Q0 a 2 0.4 x\n", r"r.trec:2: query 'q' lists document 'a' twice \(first on line 1\)"),
        ("q Q0 a 1 0.5 x\nq Q0 b 2 nan x\n", r"r.trec:2: score 'nan' is not a finite number"),
        ("q Q0 a 1 inf x\n", r"r.trec:1: score 'inf' is not a finite number"),
        ("q Q0 a 1 high x\n", r"r.trec:1: score 'high' is not a number"),
        ('[{"q": {"a": 1}}]', r"r.trec: a JSON run is an object .*not a list"),
        ('{"q": {"a": 1, "a": 2}}', r"r.trec: invalid JSON run: key 'a' appears twice"),
        ('{"q": {"a": NaN}}', r"r.trec: query 'q' doc 'a': score nan is not a finite number"),
        ('{"q": [1, 2]}', r"r.trec: query 'q': expected \{doc id: score\}"),
        ('{"q": ', r"r.trec: invalid JSON run"),
    ],
)
def test_bad_run_files_are_named_by_line(tmp_path, content: str, message: str) -> None:  # noqa: ANN001
    (tmp_path / "r.trec").write_text(content)
    with pytest.raises(DataError, match=message):
        read_run(tmp_path / "r.trec")


def test_missing_run_file_and_unwritable_ids(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match="run file .*none.trec not found"):
        read_run(tmp_path / "none.trec")
    with pytest.raises(DataError, match="document id 'a b' is empty or holds spaces"):
        write_run({"q": {"a b": 1.0}}, tmp_path / "r.trec")
    write_run({"q": {"a b": 1.0}}, tmp_path / "r.json")  # JSON has no such limit
    assert json.loads((tmp_path / "r.json").read_text()) == {"q": {"a b": 1.0}}


def test_tabs_double_spaces_and_crlf_take_the_fast_path(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import rsretrieve.runs as runs

    lines = [f"q{q} Q0 d{d} {d + 1} {1 - d / 10} tag" for q in range(3) for d in range(5)]
    canonical = tmp_path / "one.trec"
    canonical.write_text("\n".join(lines) + "\n")
    spaced = tmp_path / "spaced.trec"
    spaced.write_bytes(("  " + "\r\n".join(line.replace(" ", "\t", 2).replace(" ", "   ") for line in lines) + " \r\n\r\n").encode())
    expected = read_run(canonical)

    def slow(*args):  # noqa: ANN002, ANN202
        raise AssertionError("the line-by-line reader was used")

    monkeypatch.setattr(runs, "_read_trec_run", slow)
    got = read_run(spaced)
    assert got.qids == expected.qids and got.names == expected.names
    np.testing.assert_array_equal(got.docs, expected.docs)
    np.testing.assert_array_equal(got.scores, expected.scores)


def test_a_run_malformed_from_its_first_line_fails_before_the_bulk_parse(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import rsretrieve.runs as runs

    path = tmp_path / "big.trec"
    path.write_text("".join(f"q{i % 50} Q0 d{i} 1 np.float64({i}) t\n" for i in range(20000)))

    def bulk(*args):  # noqa: ANN002, ANN202
        raise AssertionError("the whole file was parsed before line 1 was reported")

    for name in ("_read_canonical_trec", "_read_spaced_trec", "read_text"):
        monkeypatch.setattr(runs, name, bulk)
    with pytest.raises(DataError, match=r"big\.trec:1: score 'np\.float64\(0\)' is not a number"):
        read_run(path)
    path.write_text("q1 Q0 d1 1 0.5 t\nq1 Q0 d2 2 0.4\n" + "q1 Q0 d3 3 0.3 t\n" * 5000)
    with pytest.raises(DataError, match=r"big\.trec:2: a TREC run line has 6 fields \(qid Q0 doc rank score tag\), got 5"):
        read_run(path)
