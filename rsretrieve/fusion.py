"""Fuse runs (S1 with S2, or several models) with ranx's fusion methods."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rsretrieve.errors import ConfigError, DataError
from rsretrieve.registry import unknown_name_error
from rsretrieve.runs import Run, as_run

# ranx method names, plus the classic Comb* names as aliases.
METHODS = (
    "min", "max", "med", "sum", "anz", "mnz", "gmnz", "wmnz", "wsum", "rrf", "rbc", "isr",
    "log_isr", "logn_isr", "bordafuse", "condorcet", "mapfuse", "posfuse", "probfuse",
    "segfuse", "slidefuse", "w_bordafuse", "w_condorcet", "mixed", "bayesfuse",
)
ALIASES = {"combsum": "sum", "combmnz": "mnz", "combanz": "anz", "combmax": "max", "combmin": "min", "combmed": "med"}
NORMS = ("min-max", "max", "sum", "zmuv", "rank", "borda", "none")
# Methods that fuse ranks or use their own normalisation; ranx wants no score norm for them.
RANK_BASED = {"rrf", "rbc", "isr", "log_isr", "logn_isr", "bordafuse", "condorcet"}


def fuse_runs(
    runs: Sequence[Run | Mapping[str, Mapping[str, float]]], method: str = "rrf", norm: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Run:
    """Fuse ``runs`` query by query. ``norm`` defaults to min-max for score-based methods."""
    from ranx import Run as RanxRun
    from ranx import fuse

    from rsretrieve.kernels import ensure_ranx
    from rsretrieve.metrics import DocCodes

    ensure_ranx()
    if len(runs) < 2:
        raise ConfigError("fusion needs at least two runs")
    name = ALIASES.get(method, method)
    if name not in METHODS:
        raise unknown_name_error("fusion method", method, [*METHODS, *ALIASES])
    norm = norm or ("none" if name in RANK_BASED else "min-max")
    if norm not in NORMS:
        raise unknown_name_error("score normalisation", norm, NORMS)
    runs = [as_run(run) for run in runs]
    queries = sorted(set().union(*(run.qids for run in runs)))
    codes = DocCodes()  # one id width: ranx's kernels compiled at install serve every run
    ranx_runs = [RanxRun({q: {codes(d): s for d, s in _scores(run, q, by_rank=name in RANK_BASED).items()} for q in queries})
                 for run in runs]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fused = fuse(ranx_runs, norm=None if norm == "none" else norm, method=name, params=dict(params or {}))
    except (AssertionError, KeyError, ValueError) as exc:
        raise DataError(f"fusion '{method}' failed: {exc}; supervised methods need params (see ranx.fuse)") from exc
    return Run.from_dict({q: {codes.name(d): float(s) for d, s in docs.items()} for q, docs in fused.to_dict().items()})


def _scores(run: Run, qid: str, by_rank: bool) -> dict[str, float]:
    """One query's scores as ranx gets them. Rank-based methods get ranks as scores, so that
    ranx ranks tied documents by the ranking rule rather than by insertion order."""
    ranked = run.ranked(qid)
    if by_rank:
        return {d: float(len(ranked) - i) for i, (d, _) in enumerate(ranked)}
    return dict(ranked)


def fuse_files(
    paths: Sequence[Path], out: Path, method: str = "rrf", norm: str | None = None,
    qrels_path: Path | None = None, queries_path: Path | None = None, metrics: Sequence[str] | None = None,
) -> tuple[Run, dict[str, Any] | None, Path | None]:
    """What ``rsretrieve fuse`` runs: read the run files, fuse them, write the fused run to
    ``out`` and, with qrels and queries, score it like any saved run (results JSON beside it).
    Returns the fused run, the report and where it went (None, None without qrels)."""
    from rsretrieve.evaluate import DEFAULT_METRICS, evaluate_saved_run
    from rsretrieve.io import check_writable, results_path, write_json
    from rsretrieve.runs import read_run, write_run

    if (qrels_path is None) != (queries_path is None):
        raise ConfigError("give --qrels and --queries together to evaluate the fused run")
    scored = qrels_path is not None
    if metrics and not scored:
        raise ConfigError("--metrics scores the fused run: give --qrels and --queries too")
    for target in (out, results_path(out) if scored else None):
        if target is not None:
            check_writable(Path(target))
    from rsretrieve.progress import stage

    stage(f"reading {len(paths)} runs and fusing them with {method}")
    fused = fuse_runs([read_run(Path(path)) for path in paths], method, norm)
    write_run(fused, Path(out), tag=f"fused-{method}")
    if not scored:
        return fused, None, None
    report = evaluate_saved_run(Path(out), Path(queries_path), Path(qrels_path), metrics or list(DEFAULT_METRICS))  # type: ignore[arg-type]
    write_json(results_path(out), report)
    return fused, report, results_path(out)


WARM_METHODS = ("rrf", "sum", "mnz", "max", "wsum")
WARM_TESTS = ("student", "fisher", "tukey")


def compile_ranx() -> float:
    """Run ranx's numba kernels once on a toy input so that they are compiled and cached
    (in ranx's own folder) at install time, not during a user's first ``fuse``,
    ``leaderboard`` or ``eval --backend ranx``, where compiling takes about a minute on 2
    cores. Covers every metric, the common fusion methods and norms, and the significance
    tests of leaderboards; rsretrieve hands ranx document ids of one width (``DocCodes``),
    so these compiled kernels serve every dataset. Returns the seconds it took."""
    import time

    from ranx import compare

    from rsretrieve.evaluate import DEFAULT_METRICS
    from rsretrieve.metrics import METRIC_NAMES, DocCodes, per_query, ranx_qrels, ranx_run

    started = time.perf_counter()
    qrels = {f"q{q}": {f"d{d}": (q + d) % 3 for d in range(6)} for q in range(3)}
    runs = [Run.from_dict({q: {f"d{d}": float((d * (i + 2)) % 5) for d in range(6)} for q in qrels}) for i in range(2)]
    every_metric = [*DEFAULT_METRICS, *(f"{name}@5" for name in METRIC_NAMES if name != "r-precision"),
                    *(name for name in METRIC_NAMES if name not in ("mrr",))]
    per_query(qrels, runs[0], every_metric, list(qrels), "ranx")
    for method in WARM_METHODS:
        for norm in (None, "none") if method not in RANK_BASED else (None,):
            fuse_runs(runs, method, norm, params={"weights": [0.5, 0.5]} if method == "wsum" else None)
    codes = DocCodes()
    relevant = ranx_qrels(qrels, list(qrels), codes)
    for test in WARM_TESTS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compare(relevant, [ranx_run(run, list(qrels), f"r{i}", codes) for i, run in enumerate(runs)], ["ndcg@10"],
                    stat_test=test, n_permutations=10)
    return time.perf_counter() - started
