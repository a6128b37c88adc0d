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

QUERY_ID_FIELDS = ("_id", "id", "query_id", "query-id", "qid")
QUERY_TEXT_FIELDS = ("text", "query", "caption")
DOC_ID_FIELDS = ("corpus-id", "corpus_id", "doc_id", "docid", "doc", "key")
SCORE_FIELDS = ("score", "relevance", "rel", "label")
QRELS_SUFFIXES = {".txt", ".tsv", ".qrels", ".trec", ".json", ".jsonl"}


class Qrels(dict[str, dict[str, int]]):
    """``{query id: {doc id: grade}}`` that can say where a judgement was read, so that later
    checks (unknown query or document ids) name the file and line. Lines are found again on
    demand, so large qrels carry no per-judgement bookkeeping."""

    def __init__(self, *args: Any, files: Sequence[Path] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.files = list(files)

    def where(self, qid: str, doc: str | None = None) -> str:
        """'file:line' of the judgement (of the query's first one when ``doc`` is None)."""
        for file in self.files:
            for q, d, _, location in _read_qrels_file(file):
                if q == qid and (doc is None or d == doc):
                    return _where(file, location)
        return ", ".join(map(str, self.files)) or "qrels"


def _where(file: Path, location: int | str) -> str:
    return f"{file}:{location}" if isinstance(location, int) else location


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
    merged = Qrels(files=files)
    for file in files:
        for qid, doc, rel, location in _read_qrels_file(file):
            previous = merged.setdefault(qid, {}).get(doc)
            if previous is not None and previous != rel:
                raise DataError(
                    f"{_where(file, location)}: query '{qid}' doc '{doc}' has relevance {rel}, "
                    f"but {merged.where(qid, doc)} gives {previous}"
                )
            merged[qid][doc] = rel
    if not merged:
        raise DataError(f"{path}: no judgements")
    return merged


Judgement = tuple[str, str, int, "int | str"]  # qid, doc, grade, line number (or a JSON location)


def _read_qrels_file(path: Path) -> list[Judgement]:
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
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON list of judgements")
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


def _json_mapping(path: Path, data: Any) -> list[Judgement]:
    odd = next((qid for qid, docs in data.items() if not isinstance(docs, dict)), None)
    if odd is not None:
        raise DataError(f"{path} is not a qrels file (query '{odd}': expected {{doc id: relevance}}, got a "
                        f"{type(data[odd]).__name__}; a JSON file in a qrels folder is read as qrels)")
    out = []
    for qid, docs in data.items():
        where = f"{path}: query '{qid}'"
        if not isinstance(docs, dict):
            raise DataError(f"{where}: expected {{doc id: relevance}}")
        out.extend((str(qid), str(doc), _relevance(rel, f"{where} doc '{doc}'"), where) for doc, rel in docs.items())
    return out


def _json_row(where: str, row: Any) -> Judgement:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object")
    qid = str(_field(row, QUERY_ID_FIELDS, where, "query id"))
    doc = str(_field(row, DOC_ID_FIELDS, where, "document id"))
    return qid, doc, _relevance(_field(row, SCORE_FIELDS, where, "relevance"), where), where


def _json_lines(path: Path, text: str) -> list[Judgement]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}:{number}: malformed JSON line: {exc.args[0]}") from None
        out.append((*_json_row(f"{path}:{number}", row)[:3], number))
    return out


BEIR_HEADER = (("query-id", "query_id", "qid"), ("corpus-id", "corpus_id", "doc-id", "doc_id", "docid"), ("score", "relevance", "rel"))


def _columns(path: Path, text: str) -> list[Judgement]:
    """TREC (qid iter doc rel, 4 columns) or BEIR TSV (query-id corpus-id score, 3 columns,
    with or without its header line). The first line decides the layout for the whole file."""
    out = []
    width = 0
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{number}"
        if not width:
            if len(parts) == 3 and all(p.lower() in names for p, names in zip(parts, BEIR_HEADER)):
                width = 3
                continue  # the BEIR header
            if len(parts) not in (3, 4):
                raise DataError(
                    f"{where}: expected 4 columns (TREC: qid iter doc rel) or 3 (BEIR: query-id corpus-id score), "
                    f"got {len(parts)}"
                )
            width = len(parts)
        elif len(parts) != width:
            layout = "TREC (qid iter doc rel)" if width == 4 else "BEIR (query-id corpus-id score)"
            raise DataError(f"{where}: {len(parts)} columns in a {width}-column {layout} file")
        qid, doc, rel = (parts[0], parts[2], parts[3]) if width == 4 else parts
        out.append((qid, doc, _relevance(rel, where), number))
    return out
