"""Readers for queries.jsonl and qrels (TREC, BEIR TSV, JSON, JSONL), detected by content.

The CrisisLandMark authors published no queries/qrels format, so field names and
layouts that the common IR conventions use are all accepted, and anything else fails
with the file, line and field named.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rsretrieve.errors import DataError
from rsretrieve.io import read_text

Qrels = dict[str, dict[str, int]]
QUERY_ID_FIELDS = ("_id", "id", "query_id", "query-id", "qid")
QUERY_TEXT_FIELDS = ("text", "query", "caption")
DOC_ID_FIELDS = ("corpus-id", "corpus_id", "doc_id", "docid", "doc", "key")
SCORE_FIELDS = ("score", "relevance", "rel", "label")
QRELS_SUFFIXES = {".txt", ".tsv", ".qrels", ".trec", ".json", ".jsonl"}


def _field(obj: dict[str, Any], names: tuple[str, ...], where: str, what: str) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    raise DataError(f"{where}: no {what} field (looked for {', '.join(names)})")


def load_queries(path: Path | str) -> dict[str, str]:
    """queries.jsonl: one JSON object per line with an id and a text field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"queries file {path} not found")
    queries: dict[str, str] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{where}: malformed JSON line: {exc.args[0]}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object")
        qid = str(_field(obj, QUERY_ID_FIELDS, where, "query id"))
        text = _field(obj, QUERY_TEXT_FIELDS, where, "query text")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: query '{qid}' has an empty or non-string text")
        if qid in queries:
            raise DataError(f"{where}: duplicate query id '{qid}'")
        queries[qid] = text
    if not queries:
        raise DataError(f"{path}: no queries")
    return queries


def load_query_fields(path: Path | str, fields: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Extra per-query fields of queries.jsonl (e.g. country), for grouped metrics."""
    load_queries(path)  # validates the file, with line numbers
    out: dict[str, dict[str, Any]] = {}
    for line in read_text(path).splitlines():
        if line.strip():
            obj = json.loads(line)
            out[str(_field(obj, QUERY_ID_FIELDS, str(path), "query id"))] = {f: obj.get(f) for f in fields}
    return out


def load_qrels(path: Path | str) -> Qrels:
    """A qrels file, or a folder whose qrels files are merged (conflicts are errors)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix in QRELS_SUFFIXES
        )
        if not files:
            raise DataError(f"qrels folder {path} holds no qrels files ({', '.join(sorted(QRELS_SUFFIXES))})")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"qrels {path} not found")
    merged: Qrels = {}
    origin: dict[tuple[str, str], Path] = {}
    for file in files:
        for qid, doc, rel in _read_qrels_file(file):
            previous = merged.setdefault(qid, {}).get(doc)
            if previous is not None and previous != rel:
                raise DataError(
                    f"{file}: query '{qid}' doc '{doc}' has relevance {rel}, "
                    f"but {origin[(qid, doc)]} gives {previous}"
                )
            merged[qid][doc] = rel
            origin[(qid, doc)] = file
    if not merged:
        raise DataError(f"{path}: no judgements")
    return merged


def _read_qrels_file(path: Path) -> list[tuple[str, str, int]]:
    text = read_text(path)
    head = text.lstrip()[:1]
    if head == "{":
        try:
            data = json.loads(text)
        except ValueError:
            return _json_lines(path, text)
        return _json_mapping(path, data)
    if head == "[":
        try:
            rows = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{path}: invalid JSON: {exc.args[0]}") from None
        return [_json_row(f"{path}[{i}]", row) for i, row in enumerate(rows)]
    return _columns(path, text)


def _relevance(value: Any, where: str) -> int:
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: relevance {value!r} is not a number") from None
    if as_float != int(as_float):
        raise DataError(f"{where}: relevance {value!r} is not an integer grade")
    return int(as_float)


def _json_mapping(path: Path, data: Any) -> list[tuple[str, str, int]]:
    out = []
    for qid, docs in data.items():
        if not isinstance(docs, dict):
            raise DataError(f"{path}: query '{qid}': expected {{doc id: relevance}}")
        out.extend((str(qid), str(doc), _relevance(rel, f"{path}: query '{qid}' doc '{doc}'")) for doc, rel in docs.items())
    return out


def _json_row(where: str, row: Any) -> tuple[str, str, int]:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    qid = str(_field(row, QUERY_ID_FIELDS, where, "query id"))
    doc = str(_field(row, DOC_ID_FIELDS, where, "document id"))
    return qid, doc, _relevance(_field(row, SCORE_FIELDS, where, "relevance"), where)


def _json_lines(path: Path, text: str) -> list[tuple[str, str, int]]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}:{number}: malformed JSON line: {exc.args[0]}") from None
        out.append(_json_row(f"{path}:{number}", row))
    return out


def _columns(path: Path, text: str) -> list[tuple[str, str, int]]:
    """TREC (qid iter doc rel) or BEIR TSV (query-id corpus-id score, optional header)."""
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{number}"
        if len(parts) == 4:
            qid, doc, rel = parts[0], parts[2], parts[3]
        elif len(parts) == 3:
            qid, doc, rel = parts
            if number == 1 and not _is_number(rel):
                continue  # BEIR header line
        else:
            raise DataError(
                f"{where}: expected 4 columns (TREC: qid iter doc rel) or 3 (qid doc rel), got {len(parts)}"
            )
        out.append((qid, doc, _relevance(rel, where)))
    return out


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
