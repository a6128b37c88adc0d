"""Where two models differ, query by query.

A mean hides which queries a model wins: two models at the same nDCG can disagree on half the
queries. ``compare_sides`` pairs the per-query scores that ``eval`` results and leaderboard
records keep, and for every metric and slice gives wins, ties and losses, the mean difference
with a paired bootstrap confidence interval, the p-value of the significance test (ranx's own
test functions, as ``leaderboard`` uses them) and the queries that differ most each way.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.errors import ConfigError, DataError
from rsretrieve.io import read_json_object
from rsretrieve.registry import did_you_mean

PerQuery = dict[str, dict[str, dict[str, float]]]  # slice -> metric -> query id -> score
TESTS = ("student", "fisher", "tukey")
RESAMPLES = 10_000
CONFIDENCE = 0.95
TIE = 1e-12  # scores closer than this count as a tie (trec_eval prints 4 decimals; we keep floats)


@dataclass(frozen=True)
class Side:
    """One model's scores: where they were read, and what can redraw its hits."""

    name: str
    path: Path
    per_query: PerQuery
    queries: Path | None = None  # queries.jsonl the scores were computed on
    qrels: Path | None = None
    index: Path | None = None
    runs: Mapping[str, Path] = field(default_factory=dict)  # slice -> run file
    dataset: str | None = None  # the fingerprint of the dataset the index held, when known


def _source_path(value: Any) -> Path | None:
    return Path(value) if isinstance(value, str) and value else None


def load_side(path: Path, name: str | None = None) -> Side:
    """An ``eval`` results JSON or a leaderboard record, with its per-query scores; a file
    written before rsretrieve kept them is named, with how to rewrite it."""
    path = Path(path)
    data = read_json_object(path, DataError, "an eval results file or a leaderboard record")
    per_query = data.get("per_query")
    if not isinstance(per_query, dict) or not per_query:
        kind = "leaderboard record" if "model" in data and "suite" in data else "results file"
        again = "rerun leaderboard with --force" if kind == "leaderboard record" else "rerun eval"
        raise DataError(f"{path}: this {kind} keeps no per-query scores (written before rsretrieve kept them, "
                        f"or a caption benchmark's); {again} to compare query by query")
    source = data.get("source") if isinstance(data.get("source"), dict) else {}
    dataset = data.get("dataset") if isinstance(data.get("dataset"), dict) else {}
    held = source.get("dataset") if isinstance(source.get("dataset"), dict) else dataset  # eval results, or a record
    runs = {s: Path(p) for s, p in (data.get("runs") or {}).items()} if isinstance(data.get("runs"), dict) else {}
    if not runs and _source_path(source.get("run")):
        runs = {"all": Path(source["run"])}
    return Side(
        name=name or str(data.get("model") or path.stem.removesuffix(".results")),
        path=path,
        per_query={s: {m: {str(q): float(v) for q, v in scores.items() if v is not None} for m, scores in metrics.items()}
                   for s, metrics in per_query.items()},
        queries=_source_path(source.get("queries") or dataset.get("queries")),
        qrels=_source_path(source.get("qrels") or dataset.get("qrels")),
        index=_source_path(source.get("index") or data.get("index")),
        runs=runs,
        dataset=held.get("fingerprint") if isinstance(held, dict) else None,
    )


def read_board(folder: Path) -> dict[str, Any]:
    """A leaderboard folder's leaderboard.json."""
    return read_json_object(Path(folder) / "leaderboard.json", DataError, "a leaderboard folder", ("rows", "suite"))


def leaderboard_sides(folder: Path, board: Mapping[str, Any], first: str | None, second: str | None) -> tuple[Side, Side]:
    """Two rows of the leaderboard ``board`` of ``folder`` (the top two when none are named),
    read from their records, with the runs and indexes the leaderboard wrote beside them."""
    names = [str(row["model"]) for row in board["rows"]]
    if first is None and second is None:
        if len(names) < 2:
            raise ConfigError(f"{folder}: the leaderboard has {len(names)} row(s); comparing needs two")
        first, second = names[0], names[1]
    if first is None or second is None:
        raise ConfigError("name two models of the leaderboard, or none for its top two")
    sides = []
    for name in (first, second):
        if name not in names:
            raise ConfigError(f"model '{name}' is not a row of {Path(folder) / 'leaderboard.json'} "
                              f"(rows: {', '.join(names)}).{did_you_mean(name, names)}")
        record = _record_path(Path(folder), name, str(board["suite"]))
        side = load_side(record, name)
        runs = {s: Path(folder) / "runs" / f"{name}.{s}.json" for s in side.per_query}
        index = Path(folder) / "indexes" / name
        sides.append(replace(side, index=index if index.is_dir() else side.index,
                             runs={s: p for s, p in runs.items() if p.is_file()}))
    return sides[0], sides[1]


def _record_path(folder: Path, model: str, suite: str) -> Path:
    records = sorted((folder / "records" / model).glob("*.json"))
    for path in records:
        data = read_json_object(path, DataError, "a leaderboard record")
        if data.get("suite") == suite:
            return path
    raise DataError(f"{folder / 'records' / model}: no record of suite '{suite}' (run the leaderboard again)")


@dataclass(frozen=True)
class Difference:
    """One metric on one slice: ``difference`` is ``first - second``."""

    slice: str
    metric: str
    n_queries: int
    first: float
    second: float
    difference: float
    ci: tuple[float, float]
    p_value: float | None
    wins: int  # queries where the first model scores higher
    ties: int
    losses: int
    first_better: list[dict[str, Any]]  # largest differences in the first model's favour
    second_better: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "slice": self.slice, "metric": self.metric, "n_queries": self.n_queries,
            "first": self.first, "second": self.second, "difference": self.difference,
            "ci": list(self.ci), "p_value": self.p_value, "wins": self.wins, "ties": self.ties, "losses": self.losses,
            "first_better": self.first_better, "second_better": self.second_better,
        }


def bootstrap_ci(differences: np.ndarray, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of paired per-query differences, queries resampled
    with replacement (seeded: the same files give the same interval)."""
    n = len(differences)
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, 4_000_000 // n)  # bounded memory: at most about 4 M indices at once
    for start in range(0, resamples, step):
        rows = rng.integers(0, n, size=(min(step, resamples - start), n))
        means[start:start + len(rows)] = differences[rows].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))


PERMUTATIONS = 10_000


def randomization_p(first: np.ndarray, second: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 42) -> float:
    """Fisher's randomization test (Smucker et al., CIKM 2007), the statistic ranx's
    ``fisher`` uses: the share of random swaps of each query's two scores whose absolute mean
    difference reaches the observed one. Seeded numpy draws: ranx draws its permutations on
    numba threads that its seed does not reach, so its p-value changes from run to run
    (0.484 to 0.510 in six calls on one pair of 50 queries)."""
    d = np.asarray(first, np.float64) - np.asarray(second, np.float64)
    observed = abs(d.mean()) - 1e-12 * max(1.0, abs(d.mean()))  # the identity swap must count
    rng = np.random.default_rng(seed)
    hits, step = 0, max(1, 4_000_000 // len(d))
    for start in range(0, permutations, step):
        signs = rng.integers(0, 2, size=(min(step, permutations - start), len(d))) * 2 - 1
        hits += int((np.abs((signs * d).mean(axis=1)) >= observed).sum())
    return hits / permutations


def p_value(first: np.ndarray, second: np.ndarray, test: str) -> float | None:
    """The p-value of ``test`` on paired per-query scores: student and tukey through ranx's
    own functions (scipy underneath), fisher by ``randomization_p``; None where undefined
    (fewer than two queries, or identical scores)."""
    from ranx.statistical_tests import paired_student_t_test
    from ranx.statistical_tests.tukey_hsd_test import tukey_hsd_test

    if len(first) < 2 or np.array_equal(first, second):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if test == "student":
            value = paired_student_t_test(first, second)[0]
        elif test == "fisher":
            value = randomization_p(first, second)
        else:
            value = tukey_hsd_test(["a", "b"], [first, second], 0.05)[1]["p-value"]
    value = float(value)
    return None if not np.isfinite(value) else value


def _check_same_queries(first: Side, second: Side, slice_name: str, metric: str) -> list[str]:
    mine, theirs = first.per_query[slice_name][metric], second.per_query[slice_name][metric]
    if mine.keys() != theirs.keys():
        only_first = sorted(set(mine) - set(theirs))
        only_second = sorted(set(theirs) - set(mine))
        detail = "; ".join(part for part in (
            f"{len(only_first)} only in {first.path} (e.g. {only_first[0]})" if only_first else "",
            f"{len(only_second)} only in {second.path} (e.g. {only_second[0]})" if only_second else "") if part)
        raise DataError(f"the two were scored on different queries ({slice_name}, {metric}): {detail}; "
                        "a paired comparison needs the same queries and qrels")
    return sorted(mine)


def _common(first: Side, second: Side, wanted: Sequence[str] | None, what: str,
            listed: Any) -> list[str]:
    mine, theirs = listed(first), listed(second)
    common = [x for x in mine if x in theirs]
    if not common:
        raise DataError(f"{first.path} and {second.path} share no {what} (first: {', '.join(mine) or 'none'}; "
                        f"second: {', '.join(theirs) or 'none'})")
    if not wanted:
        return common
    chosen = []
    for name in wanted:
        match = next((c for c in common if c.lower() == name.lower()), None)
        if match is None:
            raise ConfigError(f"{what[:-1]} '{name}' is not scored in both files (both have: {', '.join(common)})."
                              f"{did_you_mean(name, common)}")
        chosen.append(match)
    return chosen


def compare_sides(
    first: Side, second: Side, metrics: Sequence[str] | None = None, slices: Sequence[str] | None = None,
    test: str = "student", top: int = 5, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
) -> list[Difference]:
    """Every (slice, metric) both sides scored, or those asked for, on the same queries."""
    if test not in TESTS:
        raise ConfigError(f"unknown significance test '{test}' (choose {', '.join(TESTS)}).{did_you_mean(test, TESTS)}")
    if top < 0:
        raise ConfigError(f"--top must be 0 or more, got {top}")
    if first.dataset and second.dataset and first.dataset != second.dataset:
        raise DataError(f"{first.path} and {second.path} were scored on different datasets (fingerprints "
                        f"{first.dataset[:12]} and {second.dataset[:12]}): their queries' judgements differ, "
                        "so no query-by-query comparison holds")
    chosen_slices = _common(first, second, slices, "slices", lambda s: list(s.per_query))
    out = []
    for slice_name in chosen_slices:
        chosen = _common(first, second, metrics, "metrics", lambda s, n=slice_name: list(s.per_query[n]))
        for metric in chosen:
            qids = _check_same_queries(first, second, slice_name, metric)
            a = np.array([first.per_query[slice_name][metric][q] for q in qids], np.float64)
            b = np.array([second.per_query[slice_name][metric][q] for q in qids], np.float64)
            d = a - b
            order = np.argsort(-d, kind="stable")
            pick = lambda rows: [{"query": qids[i], "first": float(a[i]), "second": float(b[i]),  # noqa: E731
                                  "difference": float(d[i])} for i in rows]
            out.append(Difference(
                slice=slice_name, metric=metric, n_queries=len(qids),
                first=float(a.mean()) if len(a) else float("nan"), second=float(b.mean()) if len(b) else float("nan"),
                difference=float(d.mean()) if len(d) else float("nan"),
                ci=bootstrap_ci(d, resamples, confidence), p_value=p_value(a, b, test),
                wins=int((d > TIE).sum()), ties=int((np.abs(d) <= TIE).sum()), losses=int((d < -TIE).sum()),
                first_better=pick([i for i in order[:top] if d[i] > TIE]),
                second_better=pick([i for i in order[::-1][:top] if d[i] < -TIE]),
            ))
    return out


def comparison_record(first: Side, second: Side, differences: Sequence[Difference], test: str,
                      confidence: float = CONFIDENCE, resamples: int = RESAMPLES) -> dict[str, Any]:
    """What ``compare --out`` writes as comparison.json."""
    return {
        "first": {"name": first.name, "path": str(first.path)},
        "second": {"name": second.name, "path": str(second.path)},
        "difference": "first - second",
        "test": test,
        "bootstrap": {"resamples": resamples, "confidence": confidence, "seed": 0, "interval": "percentile"},
        "tie_tolerance": TIE,
        "comparisons": [d.to_dict() for d in differences],
    }


def query_texts(side: Side) -> dict[str, str]:
    """The query texts of a side's queries file, or none when it is gone."""
    from rsretrieve.datasets.queries import load_queries

    if side.queries is None or not side.queries.is_file():
        return {}
    try:
        return load_queries(side.queries)
    except (ConfigError, DataError):
        return {}


class _Hits:
    """A side's ranked hits for some queries: from its run file for the slice, else by
    searching its index with the index's own encoder (loaded once)."""

    def __init__(self, side: Side, slice_name: str, texts: Mapping[str, str], qids: Sequence[str], k: int) -> None:
        from rsretrieve.evaluate import slice_sensor
        from rsretrieve.index import load_index
        from rsretrieve.runs import read_run

        if side.index is None or not side.index.is_dir():
            raise DataError(f"cannot draw {side.name}'s hits: {side.path} names no index folder that still exists "
                            f"({side.index or 'none'}); compare results of eval --index, or a leaderboard folder")
        self.index = load_index(side.index)
        if slice_name in side.runs:
            self.run = read_run(side.runs[slice_name])
            return
        from rsretrieve.search import encoder_for_index, search

        missing = [q for q in qids if q not in texts]
        if missing:
            raise DataError(f"cannot search {side.name}'s index for query '{missing[0]}': its text is not in "
                            f"{side.queries or 'any queries file the results name'}")
        self.run = search(self.index, encoder_for_index(self.index), {q: texts[q] for q in qids}, k, slice_sensor(slice_name))

    def top(self, qid: str, k: int) -> dict[str, float]:
        return dict(self.run.ranked(qid)[:k]) if qid in self.run else {}


def comparison_grids(
    first: Side, second: Side, difference: Difference, out: Path, texts: Mapping[str, str], k: int = 10,
    columns: int = 5,
) -> list[Path]:
    """One PNG per query of ``difference``'s largest differences, first_better then
    second_better: the first model's top-k beside the second's, relevant hits outlined green
    and judged non-relevant red (``texts``: the query texts, to search an index with)."""
    from rsretrieve.datasets.queries import load_qrels
    from rsretrieve.io import name_part
    from rsretrieve.visualize import grid, query_tiles, save_png, side_by_side

    rows = [("first-better", r) for r in difference.first_better] + [("second-better", r) for r in difference.second_better]
    if not rows:
        return []
    qids = [r["query"] for _, r in rows]
    qrels_path = first.qrels if first.qrels is not None and first.qrels.exists() else second.qrels
    qrels = load_qrels(qrels_path) if qrels_path is not None and qrels_path.exists() else None
    hits = [_Hits(side, difference.slice, texts, qids, k) for side in (first, second)]
    written = []
    for rank, (direction, row) in enumerate(rows, start=1):
        qid = row["query"]
        judged = qrels.get(qid, {}) if qrels is not None else None
        panels = []
        for side, found, score in zip((first, second), hits, (row["first"], row["second"])):
            top = found.top(qid, k)
            title = f"{side.name}: {difference.metric} {score:.4f}"
            panels.append((grid(query_tiles(found.index, top, judged=judged), columns) if top else None, title))
        heading = f"{qid}: {texts.get(qid, '')}  ({difference.slice}, difference {row['difference']:+.4f})"
        image = side_by_side(panels, heading)
        written.append(save_png(image, Path(out) / f"{rank:02d}-{direction}-{name_part(qid, '_')[:80] or 'query'}.png"))
    return written


@dataclass(frozen=True)
class CompareOutput:
    first: Side
    second: Side
    test: str
    differences: list[Difference]
    texts: dict[str, str]
    written: list[Path]  # comparison.json and the grids, with --out


def run_compare(
    first: str | None, second: str | None, leaderboard: Path | None = None, metrics: Sequence[str] | None = None,
    slices: Sequence[str] | None = None, test: str | None = None, top: int = 5, out: Path | None = None, k: int = 10,
) -> CompareOutput:
    """``rsretrieve compare``: two results files, or two rows of a leaderboard folder; with
    ``out``, comparison.json and side-by-side grids of the first (slice, metric) compared."""
    from rsretrieve.io import check_writable, write_json

    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    if out is not None:
        check_writable(Path(out), folder=True)
    if leaderboard is not None:
        board = read_board(leaderboard)
        a, b = leaderboard_sides(leaderboard, board, first, second)
        test = test or str((board.get("significance") or {}).get("test", "student"))
    elif first is None or second is None:
        raise ConfigError("give two results files (eval --out, or leaderboard records), or --leaderboard DIR")
    else:
        a, b = load_side(Path(first)), load_side(Path(second))
        if a.name == b.name:
            a, b = replace(a, name=str(a.path)), replace(b, name=str(b.path))
    test = test or "student"
    differences = compare_sides(a, b, metrics, slices, test, top)
    texts = query_texts(a) or query_texts(b)
    written: list[Path] = []
    if out is not None:
        write_json(Path(out) / "comparison.json", comparison_record(a, b, differences, test))
        written.append(Path(out) / "comparison.json")
        written += comparison_grids(a, b, differences[0], Path(out), texts, k)
    return CompareOutput(a, b, test, differences, texts, written)
