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

DEFAULT_DEPTH = 1000  # documents a saved run holds per query: what every @1000 cutoff needs

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
        out: RunDict = {}
        names = self.names
        for q in self.qids if qids is None else qids:
            row = self._row.get(q)
            if row is None:
                out[q] = {}
                continue
            start, stop = self.offsets[row], self.offsets[row + 1]
            out[q] = dict(zip(map(names.__getitem__, self.docs[start:stop].tolist()), self.scores[start:stop].tolist()))
        return out

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
    if _already_ranked(rows, scores, docs, names):
        return np.arange(len(rows))
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


def _already_ranked(rows: np.ndarray, scores: np.ndarray, docs: np.ndarray, names: Sequence[str]) -> bool:
    """True when entries already follow the rule (a run file written in rank order): no sort needed."""
    same = rows[1:] == rows[:-1]
    if (rows[1:] < rows[:-1]).any() or (same & (scores[1:] > scores[:-1])).any():
        return False
    tied = np.flatnonzero(same & (scores[1:] == scores[:-1]))
    return all(names[a].encode("utf-8") > names[b].encode("utf-8") for a, b in zip(docs[tied].tolist(), docs[tied + 1].tolist()))


def as_run(run: Run | Mapping[str, Mapping[str, float]]) -> Run:
    """Accept a Run or a ``{qid: {doc: score}}`` mapping."""
    return run if isinstance(run, Run) else Run.from_dict(run)


def write_run(run: Run | Mapping[str, Mapping[str, float]], path: Path, tag: str = "rsretrieve",
              as_json: bool | None = None) -> None:
    """Write a run: ``.json`` (or ``as_json``) as ranx JSON, anything else as TREC (qid Q0 doc
    rank score tag), in ranking-rule order with full-precision scores."""
    run, path = as_run(run), Path(path)
    if as_json if as_json is not None else path.suffix == ".json":
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
    with atomic_path(path, need=run_bytes(run, tag)) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row, qid in enumerate(run.qids):
            start, stop = run.offsets[row], run.offsets[row + 1]
            handle.writelines(
                f"{qid} Q0 {names[d]} {rank} {s!r} {tag}\n"
                for rank, (d, s) in enumerate(zip(run.docs[start:stop].tolist(), run.scores[start:stop].tolist()), 1)
            )


def run_bytes(run: Run, tag: str = "rsretrieve") -> int:
    """About how many bytes the run takes as a file (to check the disk before writing it)."""
    line = sum(map(len, run.names)) / max(1, len(run.names)) + sum(map(len, run.qids)) / max(1, len(run.qids)) + len(tag) + 30
    return int(len(run.docs) * line)


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
    with open(path, "rb") as handle:
        start = handle.read(HEAD_BYTES)
        whole = not handle.read(1)
    head = start.lstrip(b" \t\r\n")[:1]
    if head and head not in b"{[\xef":
        _check_head(path, start, whole)
        run = _read_canonical_trec(path)
        if run is None:
            run = _read_spaced_trec(path)
        if run is not None:
            return run
    text = read_text(path)
    if text.lstrip(" \t\r\n")[:1] in ("{", "["):
        return _read_json_run(path, text)
    return _read_trec_run(path, text)


HEAD_BYTES = 1 << 16  # the first lines, checked before any bulk parse
_SPACES = bytes.maketrans(b"\t\r\f\v", b"    ")


def _check_head(path: Path, start: bytes, whole: bool) -> None:
    """Check the first lines as the full reader would, before any bulk parse: a file that is
    malformed from its first line fails at once, whatever its size (a 2-million-line run of
    ``np.float64(...)`` scores cost 9.6 s and 2.1 GB before naming line 1)."""
    lines = start.split(b"\n")
    for number, raw in enumerate(lines if whole else lines[:-1], start=1):  # the last may be cut
        try:
            fields = raw.decode("utf-8").split()
        except UnicodeDecodeError:
            return  # read_text names the byte
        if not fields:
            continue
        if len(fields) != 6:
            raise DataError(f"{path}:{number}: a TREC run line has 6 fields (qid Q0 doc rank score tag), got {len(fields)}")
        if not _is_float(fields[4]):
            raise DataError(f"{path}:{number}: score '{fields[4]}' is not a number")
        if not math.isfinite(float(fields[4])):
            raise DataError(f"{path}:{number}: score '{fields[4]}' is not a finite number")


def _read_spaced_trec(path: Path) -> Run | None:
    """The fast path for TREC files separated by tabs or runs of spaces (trec_eval accepts any
    whitespace): the bytes are normalised to single spaces in C, not split line by line in
    Python (2 million lines: 2.22 s and 446 MB, against 5.71 s and 1,680 MB line by line;
    benchmarks/run_files.py)."""
    import pyarrow as pa

    data = Path(path).read_bytes()
    spaced = data.translate(_SPACES)  # tabs, CR, FF, VT -> spaces, one C pass
    if spaced == data and b"  " not in data and b"\n " not in data and not data.startswith(b" "):
        return None  # single spaces already: the canonical reader's refusal stands
    del data
    while b"  " in spaced:
        spaced = spaced.replace(b"  ", b" ")  # each pass halves every run
    spaced = spaced.replace(b" \n", b"\n").replace(b"\n ", b"\n").strip(b" ")
    return _read_canonical_trec(pa.BufferReader(spaced))


def _read_canonical_trec(path: Any) -> Run | None:
    """Fast path for TREC files whose fields are separated by single spaces (what rsretrieve
    and most tools write): parsed by Arrow's CSV reader in C, documents dictionary-encoded so
    that no Python object is made per line. None for any other layout, which the exact
    line-by-line reader then handles (and names the bad line, if any)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv

    columns = ["qid", "q0", "doc", "rank", "score", "tag"]
    try:
        table = csv.read_csv(
            path,
            read_options=csv.ReadOptions(column_names=columns),
            parse_options=csv.ParseOptions(delimiter=" ", quote_char=False, escape_char=False),
            convert_options=csv.ConvertOptions(
                column_types={"qid": pa.string(), "doc": pa.string(), "score": pa.float64()},
                include_columns=["qid", "doc", "score"], strings_can_be_null=False, quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows == 0:
        return None
    qid_codes = pc.dictionary_encode(table.column("qid")).combine_chunks()
    doc_codes = pc.dictionary_encode(table.column("doc")).combine_chunks()
    qids, names = qid_codes.dictionary.to_pylist(), doc_codes.dictionary.to_pylist()
    if "" in qids or "" in names:
        return None
    rows = qid_codes.indices.to_numpy().astype(np.int64)
    docs = doc_codes.indices.to_numpy().astype(np.int64)
    values = table.column("score").to_numpy()
    if not np.isfinite(values).all() or _has_duplicates(rows, docs, len(names)):
        return None  # the line-by-line reader names the offending line
    order = np.argsort(rows, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(qids)))])
    return Run(qids, names, offsets, docs[order], values[order])


def _has_duplicates(rows: np.ndarray, docs: np.ndarray, n_names: int) -> bool:
    ordered = np.sort(rows * max(n_names, 1) + docs)
    return bool((ordered[1:] == ordered[:-1]).any())


def _read_json_run(path: Path, text: str) -> Run:
    try:
        data = json.loads(text.lstrip("\ufeff"), object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        raise DataError(f"{path}: invalid JSON run: key '{exc.args[0]}' appears twice in one object") from None
    except ValueError as exc:
        raise DataError(f"{path}: invalid JSON run: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a JSON run is an object {{query id: {{doc id: score}}}}, not a {type(data).__name__}")
    if {"results", "metrics"} <= set(data) or data.get("format") in ("rsretrieve-index", "rsretrieve-model"):
        raise DataError(f"{path} is an rsretrieve results file (scores per metric, not a ranked list): give the run "
                        "that eval --save-run or search --out wrote")
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
    """TREC lines, split in one C call; a vectorised count of fields per line guards the
    layout (a line with another count than 6 is an error naming it)."""
    tokens = text.split()
    if not _six_fields_per_line(text, len(tokens)):
        _check_fields(path, text)
    qcol, dcol, scol = tokens[0::6], tokens[2::6], tokens[4::6]
    del tokens
    qids, rows = _codes(qcol)
    doc_names, docs = _codes(dcol)
    values = _scores(path, text, scol)
    _check_duplicates(path, text, rows, docs, qids, doc_names)
    order = np.argsort(rows, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(qids)))])
    return Run(qids, doc_names, offsets, docs[order], values[order])


def _codes(column: list[str]) -> tuple[list[str], np.ndarray]:
    """Distinct values in order of first appearance, and each entry's index among them."""
    distinct = list(dict.fromkeys(column))
    index = {name: i for i, name in enumerate(distinct)}
    return distinct, np.fromiter(map(index.__getitem__, column), np.int64, len(column))


_WHITESPACE = np.zeros(256, bool)
_WHITESPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True


def _six_fields_per_line(text: str, n_tokens: int) -> bool:
    """Every non-blank line holds exactly 6 whitespace-separated fields (checked on the bytes;
    False for anything unusual, which the exact line-by-line check then settles)."""
    data = np.frombuffer(text.encode("utf-8"), np.uint8)
    if not data.size:
        return n_tokens == 0
    if (data >= 0x80).any() and any(c.isspace() and ord(c) > 127 for c in set(text)):
        return False
    space = _WHITESPACE[data]
    starts = (~space[1:] & space[:-1]).view(np.uint8)  # a field starts after whitespace (byte 0 apart)
    line_starts = np.concatenate([[0], np.flatnonzero(data[:-1] == 10)])  # offsets into ``starts``
    per_line = np.add.reduceat(starts, line_starts, dtype=np.int64) if starts.size else np.zeros(1, np.int64)
    per_line[0] += not space[0]
    per_line[np.diff(np.append(line_starts, starts.size)) == 0] = 0  # reduceat's value for empty segments
    return bool(((per_line == 6) | (per_line == 0)).all()) and n_tokens == 6 * int((per_line == 6).sum())


def _check_fields(path: Path, text: str) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields and len(fields) != 6:
            raise DataError(f"{path}:{number}: a TREC run line has 6 fields (qid Q0 doc rank score tag), got {len(fields)}")


def _scores(path: Path, text: str, column: list[str]) -> np.ndarray:
    try:
        values = np.fromiter(map(float, column), np.float64, len(column))
    except ValueError:
        bad = next(s for s in column if not _is_float(s))
        raise DataError(f"{_line_of(path, text, 4, bad)}: score '{bad}' is not a number") from None
    finite = np.isfinite(values)
    if not finite.all():
        bad = column[int(np.flatnonzero(~finite)[0])]
        raise DataError(f"{_line_of(path, text, 4, bad)}: score '{bad}' is not a finite number")
    return values


def _line_of(path: Path, text: str, field: int, value: str) -> str:
    """'file:line' of the first line whose field ``field`` is ``value`` (error paths only)."""
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if len(fields) > field and fields[field] == value:
            return f"{path}:{number}"
    return str(path)


def _check_duplicates(path: Path, text: str, rows: np.ndarray, docs: np.ndarray, qids: list[str], names: list[str]) -> None:
    if not _has_duplicates(rows, docs, len(names)):
        return
    width = max(len(names), 1)
    ordered = np.sort(rows * width + docs)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    qid, doc = qids[int(repeated[0] // width)], names[int(repeated[0] % width)]
    numbers = [n for n, line in enumerate(text.splitlines(), start=1)
               if (f := line.split()) and f[0] == qid and f[2:3] == [doc]][:2]
    raise DataError(f"{path}:{numbers[1]}: query '{qid}' lists document '{doc}' twice (first on line {numbers[0]})")


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
