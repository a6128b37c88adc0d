"""Runs: the ranked documents of many queries, held as arrays, under one ranking rule.

The ranking rule is trec_eval's, used everywhere (search results, run files, scoring):
score descending, and equal scores ordered by document id descending (byte order, as
trec_eval's ``strcmp``). Run files keep every score's full precision (the shortest decimal
that reads back to the same double), so reading a run back gives exactly the ranking that
was scored. This module imports nothing heavier than numpy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.errors import DataError
from rsretrieve.io import atomic_path, read_text, write_text

RunDict = dict[str, dict[str, float]]


class Run:
    """Ranked lists in compressed rows: query ``qids[i]`` holds entries ``offsets[i]:offsets[i+1]``
    of ``docs`` (indexes into ``names``) and ``scores``, already in ranking-rule order.

    Arrays instead of ``{qid: {doc: score}}`` dictionaries: a run of 1,000 queries x depth
    1,000 takes 12 MB instead of about 150 MB, and documents share the corpus' key list.
    """

    __slots__ = ("qids", "names", "offsets", "docs", "scores", "_row")

    def __init__(
        self,
        qids: Sequence[str],
        names: Sequence[str],
        offsets: np.ndarray,
        docs: np.ndarray,
        scores: np.ndarray,
        *,
        ranked: bool = False,
    ) -> None:
        self.qids = list(qids)
        self.names = names
        self.offsets = np.asarray(offsets, dtype=np.int64)
        docs = np.asarray(docs, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        if len(self.offsets) != len(self.qids) + 1 or docs.shape != scores.shape or self.offsets[-1] != len(docs):
            raise ValueError("run arrays disagree in length")
        if not ranked:
            order = ranking_order(query_rows(self.offsets), scores, docs, names)
            docs, scores = docs[order], scores[order]
        self.docs, self.scores = docs, scores
        self._row = {q: i for i, q in enumerate(self.qids)}
        if len(self._row) != len(self.qids):
            raise ValueError("a run lists a query twice")

    @classmethod
    def from_dict(cls, run: Mapping[str, Mapping[str, float]]) -> Run:
        """A run from ``{qid: {doc: score}}`` (ranked here by the rule, whatever the dict order)."""
        names: dict[str, int] = {}
        docs: list[int] = []
        scores: list[float] = []
        offsets = [0]
        for hits in run.values():
            docs.extend(names.setdefault(str(d), len(names)) for d in hits)
            scores.extend(float(s) for s in hits.values())
            offsets.append(len(docs))
        return cls([str(q) for q in run], list(names), np.array(offsets), np.array(docs, np.int64),
                   np.array(scores, np.float64))

    @classmethod
    def from_search(cls, qids: Sequence[str], scores: np.ndarray, rows: np.ndarray, names: Sequence[str]) -> Run:
        """A run from FAISS's (n, k) scores and row ids (-1 pads a short result list)."""
        valid = rows >= 0
        offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))])
        return cls(qids, names, offsets, rows[valid], scores[valid].astype(np.float64))

    def __len__(self) -> int:
        return len(self.qids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.qids)

    def __contains__(self, qid: object) -> bool:
        return qid in self._row

    def __repr__(self) -> str:
        return f"Run({len(self.qids)} queries, {len(self.docs)} entries)"

    def ranked(self, qid: str) -> list[tuple[str, float]]:
        """(document, score) pairs of one query, best first; empty for an absent query."""
        row = self._row.get(qid)
        if row is None:
            return []
        start, stop = self.offsets[row], self.offsets[row + 1]
        return [(self.names[d], float(s)) for d, s in zip(self.docs[start:stop].tolist(), self.scores[start:stop].tolist())]

    def to_dict(self, qids: Iterable[str] | None = None) -> RunDict:
        """``{qid: {doc: score}}`` in rank order (for ranx and pytrec_eval), optionally some queries only."""
        return {q: dict(self.ranked(q)) for q in (self.qids if qids is None else qids)}

    def depths(self) -> np.ndarray:
        """Number of ranked documents of each query."""
        return np.diff(self.offsets)

    def truncate(self, k: int) -> Run:
        """The top ``k`` of every query."""
        keep = np.arange(len(self.docs)) - np.repeat(self.offsets[:-1], self.depths()) < k
        return self._masked(keep)

    def keep_documents(self, allowed: np.ndarray) -> Run:
        """Only the documents whose entry of the boolean array ``allowed`` (over ``names``) is true."""
        return self._masked(np.asarray(allowed, bool)[self.docs])

    def _masked(self, keep: np.ndarray) -> Run:
        counts = np.bincount(query_rows(self.offsets)[keep], minlength=len(self.qids))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return Run(self.qids, self.names, offsets, self.docs[keep], self.scores[keep], ranked=True)


def query_rows(offsets: np.ndarray) -> np.ndarray:
    """The query row of every entry of a compressed-row run."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def ranking_order(rows: np.ndarray, scores: np.ndarray, docs: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Order of entries under the rule: by query row, score descending, then document id
    descending where scores tie. Only the tied documents' names are compared, so a run
    without ties costs one numeric sort."""
    order = np.lexsort((-scores, rows))
    sorted_scores, sorted_rows = scores[order], rows[order]
    tie = (sorted_scores[1:] == sorted_scores[:-1]) & (sorted_rows[1:] == sorted_rows[:-1])
    if not tie.any():
        return order
    in_tie = np.zeros(len(order), bool)
    in_tie[1:] |= tie
    in_tie[:-1] |= tie
    sorted_docs = docs[order]
    tied = np.unique(sorted_docs[in_tie])
    by_name = sorted(tied.tolist(), key=lambda d: names[d].encode("utf-8"))
    name_rank = np.zeros(int(sorted_docs.max()) + 1, np.int64)
    name_rank[by_name] = np.arange(len(by_name))
    return order[np.lexsort((-name_rank[sorted_docs], -sorted_scores, sorted_rows))]


def as_run(run: Run | Mapping[str, Mapping[str, float]]) -> Run:
    """Accept a Run or a ``{qid: {doc: score}}`` mapping."""
    return run if isinstance(run, Run) else Run.from_dict(run)


def write_run(run: Run | Mapping[str, Mapping[str, float]], path: Path, tag: str = "rsretrieve") -> None:
    """Write a run: ``.json`` as ranx JSON, anything else as TREC (qid Q0 doc rank score tag),
    in ranking-rule order with full-precision scores."""
    run, path = as_run(run), Path(path)
    if path.suffix == ".json":
        body = ",\n".join(
            f"  {json.dumps(q)}: {{" + ", ".join(f"{json.dumps(d)}: {s!r}" for d, s in run.ranked(q)) + "}"
            for q in run.qids
        )
        write_text(path, "{\n" + body + "\n}\n" if body else "{}\n")
        return
    if any(c.isspace() for c in tag) or not tag:
        raise DataError(f"run tag {tag!r} must be one word (a TREC run line is split on spaces)")
    _check_ids(run, path)
    names = run.names
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row, qid in enumerate(run.qids):
            start, stop = run.offsets[row], run.offsets[row + 1]
            handle.writelines(
                f"{qid} Q0 {names[d]} {rank} {s!r} {tag}\n"
                for rank, (d, s) in enumerate(zip(run.docs[start:stop].tolist(), run.scores[start:stop].tolist()), 1)
            )


def _check_ids(run: Run, path: Path) -> None:
    for qid in run.qids:
        if not qid or any(c.isspace() for c in qid):
            raise DataError(f"cannot write {path} as TREC: query id {qid!r} is empty or holds spaces (use .json)")
    for d in np.unique(run.docs).tolist():
        name = run.names[d]
        if not name or any(c.isspace() for c in name):
            raise DataError(f"cannot write {path} as TREC: document id {name!r} is empty or holds spaces (use .json)")


def read_run(path: Path) -> Run:
    """Read a run (ranx JSON or TREC); a malformed line, a duplicate (query, document) pair or
    a score that is not a finite number is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"run file {path} not found")
    text = read_text(path)
    head = text.lstrip("\ufeff \t\r\n")[:1]
    if head in ("{", "["):
        return _read_json_run(path, text)
    return _read_trec_run(path, text)


def _read_json_run(path: Path, text: str) -> Run:
    try:
        data = json.loads(text.lstrip("\ufeff"), object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        raise DataError(f"{path}: invalid JSON run: key '{exc.args[0]}' appears twice in one object") from None
    except ValueError as exc:
        raise DataError(f"{path}: invalid JSON run: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a JSON run is an object {{query id: {{doc id: score}}}}, not a {type(data).__name__}")
    for qid, docs in data.items():
        if not isinstance(docs, dict):
            raise DataError(f"{path}: query '{qid}': expected {{doc id: score}}, got a {type(docs).__name__}")
        for doc, score in docs.items():
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise DataError(f"{path}: query '{qid}' doc '{doc}': score {score!r} is not a finite number")
    return Run.from_dict(data)


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _read_trec_run(path: Path, text: str) -> Run:
    qid_rows: dict[str, int] = {}
    names: dict[str, int] = {}
    rows: list[int] = []
    docs: list[int] = []
    scores: list[str] = []
    numbers: list[int] = []
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        parts = line.split()
        if len(parts) != 6:
            if not parts:
                continue
            raise DataError(f"{path}:{number}: a TREC run line has 6 fields (qid Q0 doc rank score tag), got {len(parts)}")
        rows.append(qid_rows.setdefault(parts[0], len(qid_rows)))
        docs.append(names.setdefault(parts[2], len(names)))
        scores.append(parts[4])
        numbers.append(number)
    try:
        values = np.array(scores, dtype=np.float64)
    except ValueError:
        bad = next(i for i, s in enumerate(scores) if not _is_float(s))
        raise DataError(f"{path}:{numbers[bad]}: score '{scores[bad]}' is not a number") from None
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise DataError(f"{path}:{numbers[bad]}: score '{scores[bad]}' is not a finite number")
    row_array = np.array(rows, np.int64)
    doc_array = np.array(docs, np.int64)
    pairs = row_array * max(len(names), 1) + doc_array
    unique, first, counts = np.unique(pairs, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup_pair = unique[counts > 1][0]
        lines = [numbers[i] for i in np.flatnonzero(pairs == dup_pair)[:2].tolist()]
        qid, doc = list(qid_rows)[int(dup_pair // max(len(names), 1))], list(names)[int(dup_pair % max(len(names), 1))]
        raise DataError(f"{path}:{lines[1]}: query '{qid}' lists document '{doc}' twice (first on line {lines[0]})")
    order = np.argsort(row_array, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(row_array, minlength=len(qid_rows)))])
    return Run(list(qid_rows), list(names), offsets, doc_array[order], values[order])


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
