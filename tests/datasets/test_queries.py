"""queries.jsonl and qrels readers: every accepted format, and clear errors otherwise."""

import json

import pytest

from rsretrieve.datasets.queries import load_qrels, load_queries
from rsretrieve.errors import DataError

EXPECTED = {"q1": {"d1": 1, "d2": 2}, "q2": {"d3": 0}}


def test_queries_accept_common_field_names(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "queries.jsonl"
    path.write_text('{"_id": "a", "text": "water"}\n\n{"query_id": 7, "query": "trees"}\n')
    assert load_queries(path) == {"a": "water", "7": "trees"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n', r"queries.jsonl:2: malformed JSON line"),
        ('{"_id": "a", "txt": "x"}\n', r"queries.jsonl:1: no query text field \(looked for text, query, caption\)"),
        ('{"text": "x"}\n', r"queries.jsonl:1: no query id field"),
        ('["a", "x"]\n', r"queries.jsonl:1: expected a JSON object"),
        ('{"_id": "a", "text": "x"}\n{"_id": "a", "text": "y"}\n', r"queries.jsonl:2: duplicate query id 'a'"),
        ('{"_id": "a", "text": "  "}\n', r"query 'a' has an empty or non-string text"),
        ("\n", r"queries.jsonl: no queries"),
    ],
)
def test_malformed_queries(tmp_path, content: str, message: str) -> None:  # noqa: ANN001
    path = tmp_path / "queries.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_queries(path)


def test_missing_queries_file(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match="queries file .*nope.jsonl not found"):
        load_queries(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("run.qrels", "q1 0 d1 1\nq1 0 d2 2\nq2 0 d3 0\n"),
        ("test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\nq2\td3\t0\n"),
        ("plain.txt", "q1 d1 1\nq1 d2 2\nq2 d3 0\n"),
        ("q.json", json.dumps(EXPECTED)),
        ("q.jsonl", '{"query-id": "q1", "corpus-id": "d1", "score": 1}\n'
                    '{"qid": "q1", "doc_id": "d2", "relevance": 2}\n{"qid": "q2", "docid": "d3", "rel": 0}\n'),
        ("list.json", json.dumps([{"qid": "q1", "doc": "d1", "rel": 1}, {"qid": "q1", "doc": "d2", "rel": 2},
                                  {"qid": "q2", "doc": "d3", "rel": 0}])),
    ],
)
def test_qrels_formats_detected_by_content(tmp_path, name: str, content: str) -> None:  # noqa: ANN001
    path = tmp_path / name
    path.write_text(content)
    assert load_qrels(path) == EXPECTED


def test_qrels_folder_merges_files_and_refuses_conflicts(tmp_path) -> None:  # noqa: ANN001
    folder = tmp_path / "qrels"
    folder.mkdir()
    (folder / "a.tsv").write_text("q1\td1\t1\n")
    (folder / "b.qrels").write_text("q1 0 d2 2\nq2 0 d3 0\n")
    (folder / ".hidden.tsv").write_text("garbage")
    (folder / "README.md").write_text("not qrels")
    assert load_qrels(folder) == EXPECTED
    (folder / "c.txt").write_text("q1 0 d1 2\n")
    with pytest.raises(DataError, match=r"c.txt:1: query 'q1' doc 'd1' has relevance 2, but .*a.tsv:1 gives 1"):
        load_qrels(folder)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("q1 0 d1 1\nq1 d1\n", r"bad.txt:2: 2 columns in a 4-column TREC"),
        ("q1 0 d1 1\nq2 d2 1\n", r"bad.txt:2: 3 columns in a 4-column TREC"),
        ("q1 d1 1\nq1 0 d2 1\n", r"bad.txt:2: 4 columns in a 3-column BEIR"),
        ("q1 d1\nq1 d2 1\n", r"bad.txt:1: expected 4 columns \(TREC.*got 2"),
        ("q1 d1 x\nq1 d2 1\n", r"bad.txt:1: relevance 'x' is not a number"),
        ("query-id corpus-id score\nq1 0 d1 1\n", r"bad.txt:2: 4 columns in a 3-column BEIR"),
        ("q1 0 d1 high\n", r"bad.txt:1: relevance 'high' is not a number"),
        ("q1 0 d1 1.5\n", r"bad.txt:1: relevance '1.5' is not an integer grade"),
        ('{"q1": {"d1": 1}\n{"q2": 1}\n', r"bad.txt:1: malformed JSON line|bad.txt:2: no document id field"),
        ('{"q1": [1, 2]}', r"query 'q1': expected \{doc id: relevance\}"),
        ("", r"no judgements"),
    ],
)
def test_malformed_qrels(tmp_path, content: str, message: str) -> None:  # noqa: ANN001
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_qrels(path)


def test_missing_or_empty_qrels_location(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match="qrels .*absent not found"):
        load_qrels(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no qrels files"):
        load_qrels(tmp_path / "empty")


def test_negative_grades_are_kept_and_count_as_not_relevant(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "neg.txt"
    path.write_text("q1 0 d1 -1\nq1 0 d2 1\n")
    assert load_qrels(path) == {"q1": {"d1": -1, "d2": 1}}


def test_qrels_say_where_a_judgement_was_read(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "q.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n\nq2\td9\t2\n")
    qrels = load_qrels(path)
    assert qrels.where("q2") == f"{path}:4"
    assert qrels.where("q1", "d1") == f"{path}:2"


def test_byte_order_mark_is_accepted(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "queries.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"_id": "q1", "text": "water"}\n')
    assert load_queries(path) == {"q1": "water"}
