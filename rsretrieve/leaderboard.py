"""Benchmark suites: every model of a suite on one dataset -> result records -> leaderboard.

Layout of a suite's output folder (MTEB-style, predictable for tools that read it)::

    OUT/indexes/<model>/                 index folders (reused while their plan is unchanged)
    OUT/runs/<model>.<slice>.json        runs per slice (ranx JSON), for significance tests and reports
    OUT/records/<model>/<dataset>.json   one result record per model x dataset
    OUT/leaderboard.{json,md,csv}        sorted by the suite's main score

A rerun that changes nothing recomputes nothing: an index is reused when its plan matches,
a record when its cache key (index plan, queries, qrels, metrics) matches.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rsretrieve import progress
from rsretrieve.config import from_mapping, read_mapping
from rsretrieve.errors import ConfigError, DataError, warn
from rsretrieve.evaluate import DEFAULT_METRICS, load_topics, parse_metrics, restrict, scored_queries
from rsretrieve.io import check_writable, read_json_object, write_json, write_text
from rsretrieve.locks import output_lock
from rsretrieve.registry import did_you_mean
from rsretrieve.runs import Run, read_run, write_run
from rsretrieve.zoo import RELEASES, ModelCard, Reference, card_summary, get_card, load_zoo

# ranx's paired tests: student (paired Student's t), fisher (randomisation), tukey (Tukey's HSD).
STAT_TESTS = ("student", "fisher", "tukey")


@dataclasses.dataclass(frozen=True)
class Significance:
    test: str = "student"
    max_p: float = 0.05

    def __post_init__(self) -> None:
        if self.test not in STAT_TESTS:
            raise ConfigError(f"significance test must be one of {', '.join(STAT_TESTS)}, got '{self.test}'")


@dataclasses.dataclass(frozen=True)
class SuiteEntry:
    """One row of a suite: a zoo card, and the index options it runs with. ``models:`` lists
    card names, or mappings ``{name: ROW, model: CARD, sensors: s2, bands: B02,B03,B04,B08,
    s2_adapter: patch-embed, s1_adapter: sar}`` (``name`` required with options: it names the
    row, its index and its records)."""

    model: str
    name: str | None = None
    sensors: str | None = None
    bands: str | None = None
    s2_adapter: str | None = None
    s1_adapter: str | None = None

    @property
    def row(self) -> str:
        return self.name or self.model

    def options(self) -> dict[str, str]:
        return {k: v for k, v in (("sensors", self.sensors), ("bands", self.bands), ("s2_adapter", self.s2_adapter),
                                  ("s1_adapter", self.s1_adapter)) if v is not None}


ROW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def parse_entries(items: Any, path: Path) -> tuple[SuiteEntry, ...]:
    """The suite's ``models:``: names, or mappings with index options (unknown keys refused)."""
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{path}: models must be a list of card names or {{name, model, ...}} mappings")
    entries = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            entries.append(SuiteEntry(model=item))
            continue
        if not isinstance(item, Mapping):
            raise ConfigError(f"{path}: models[{i}] must be a card name or a mapping")
        entry = from_mapping(SuiteEntry, dict(item), f"{path}: models[{i}]")
        if entry.options() and entry.name is None:
            raise ConfigError(f"{path}: models[{i}] ({entry.model}) has index options, so it needs a name (its row)")
        if not ROW_NAME.match(entry.row):
            raise ConfigError(f"{path}: models[{i}]: name '{entry.row}' must be letters, digits, '.', '_', '+' or '-'")
        if isinstance(item.get("bands"), (list, tuple)):
            entry = dataclasses.replace(entry, bands=",".join(map(str, item["bands"])))
        entries.append(entry)
    return tuple(entries)


@dataclasses.dataclass(frozen=True)
class Suite:
    """configs/benchmarks/*.yaml. ``data`` None is the embedded sample."""

    name: str
    models: tuple[str, ...]
    dataset: str = "crisislandmark"
    data: str | None = None
    split: str = "test"
    sensors: str = "all"
    limit: int | None = None
    queries: str | None = None
    qrels: str | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    main_metric: str = "ndcg@10"
    main_slice: str = "all"
    significance: Significance = Significance()
    tolerance: float = 0.005
    batch_size: int = 32
    # Published scores to compare with, by model (else the cards' references for this dataset).
    references: Mapping[str, tuple[Reference, ...]] = dataclasses.field(default_factory=dict)
    # Caption benchmarks (dataset rs-captions): the paper's protocol and the image folder.
    protocol: str | None = None
    images: str | None = None
    entries: tuple[SuiteEntry, ...] = ()  # the rows of ``models``, with their index options
    baseline: str | None = None  # a row every other row is tested against (bands.yaml: all bands)


def _check_main_slice(suite: Suite, path: Path) -> None:
    """The main slice must be one the suite scores: ``all``, or a sensor it keeps (caption
    benchmarks score ``all`` only). Checked before any model runs."""
    from rsretrieve.datasets.sensors import parse_sensor_filter

    slices = ["all"] if suite.dataset == CAPTIONS else ["all", *parse_sensor_filter(suite.sensors)]
    if suite.main_slice not in slices:
        raise ConfigError(f"{path}: main_slice '{suite.main_slice}' is not a slice this suite scores "
                          f"(one of {', '.join(slices)}).{did_you_mean(suite.main_slice, slices)}")


def load_suite(path: Path) -> Suite:
    data = dict(read_mapping(path))
    sig = from_mapping(Significance, data.pop("significance", None) or {}, f"{path}: significance")
    references = {
        str(model): tuple(from_mapping(Reference, r, f"{path}: references.{model}[{i}]") for i, r in enumerate(refs or []))
        for model, refs in (data.pop("references", None) or {}).items()
    }
    entries = parse_entries(data.pop("models", ()), path)
    data["models"] = tuple(e.row for e in entries)
    if "metrics" in data:
        data["metrics"] = tuple(data["metrics"])
    suite = dataclasses.replace(from_mapping(Suite, data, str(path)), significance=sig, references=references,
                                entries=entries)
    if suite.dataset == CAPTIONS and any(e.options() for e in entries):
        raise ConfigError(f"{path}: caption suites take card names only (index options are for image corpora)")
    if suite.dataset == CAPTIONS:
        _check_caption_suite(suite, path)
    else:
        if suite.protocol is not None or suite.images is not None:
            raise ConfigError(f"{path}: protocol and images are for caption benchmarks (dataset: {CAPTIONS})")
        parse_metrics(suite.metrics)
    if suite.main_metric not in suite.metrics:
        raise ConfigError(f"{path}: main_metric '{suite.main_metric}' is not in metrics")
    if not suite.models:
        raise ConfigError(f"{path}: no models")
    repeated = sorted({m for m in suite.models if suite.models.count(m) > 1})
    if repeated:
        raise ConfigError(f"{path}: model '{repeated[0]}' is listed more than once (each model is one row and one letter)")
    _check_main_slice(suite, path)
    if suite.baseline is not None and suite.baseline not in suite.models:
        raise ConfigError(f"{path}: baseline '{suite.baseline}' is not a row of the suite.{did_you_mean(suite.baseline, suite.models)}")
    unknown = sorted(set(references) - set(suite.models))
    if unknown:
        raise ConfigError(f"{path}: references for '{unknown[0]}', which is not among the suite's models")
    return suite


CAPTIONS = "rs-captions"


def _check_caption_suite(suite: Suite, path: Path) -> None:
    """A caption suite names its data, a known protocol and the paired metrics."""
    from rsretrieve.paired import get_protocol, paired_metrics

    if not suite.data:
        raise ConfigError(f"{path}: a caption suite needs data (the benchmark's folder or annotation file)")
    get_protocol(suite.protocol or "clip_benchmark")
    known = paired_metrics()
    unknown = [m for m in suite.metrics if m not in known]
    if unknown:
        raise ConfigError(f"{path}: metric '{unknown[0]}' is not a caption-benchmark metric ({', '.join(known)})")


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if file.is_file():
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def run_suite(
    suite: Suite,
    out: Path,
    zoo: Mapping[str, ModelCard] | None = None,
    force: bool = False,
    on_model: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate every model of ``suite`` (skipping those without weights); write the leaderboard."""
    from rsretrieve.datasets import open_dataset
    from rsretrieve.datasets.fixtures.crisislandmark import ensure_default_sample
    from rsretrieve.datasets.sensors import parse_sensor_filter

    zoo = load_zoo() if zoo is None else zoo
    entries = suite.entries or tuple(SuiteEntry(model=m) for m in suite.models)
    cards = [dataclasses.replace(get_card(e.model, zoo), name=e.row) for e in entries]
    options = {e.row: e for e in entries}
    if suite.dataset == CAPTIONS:
        return _run_caption_suite(suite, cards, out, force, on_model)
    root = Path(suite.data) if suite.data else ensure_default_sample()
    dataset = open_dataset(suite.dataset, root, split=suite.split, sensors=parse_sensor_filter(suite.sensors), limit=suite.limit)
    queries_path = Path(suite.queries) if suite.queries else dataset.queries_path
    qrels_path = Path(suite.qrels) if suite.qrels else dataset.qrels_path
    if queries_path is None or qrels_path is None:
        raise ConfigError(f"suite {suite.name}: dataset format '{suite.dataset}' ships no queries/qrels; give queries and qrels")
    _, qrels = load_topics(queries_path, qrels_path)
    topics_key = _fingerprint(queries_path) + _fingerprint(qrels_path)
    records, skipped, runs = [], [], {}
    for card in cards:
        if not _available(card, skipped, on_model):
            continue
        entry = options[card.name]
        if entry.sensors is not None:
            entry_data = open_dataset(suite.dataset, root, split=suite.split, sensors=parse_sensor_filter(entry.sensors), limit=suite.limit)
        else:
            entry_data = dataset
        record, model_runs = _evaluate_model(card, suite, entry_data, out, queries_path, qrels_path, topics_key, force, entry)
        records.append(record)
        if model_runs is not None:
            runs[card.name] = model_runs[suite.main_slice]
        if on_model:
            on_model(card.name, "cached" if record.get("cached") else f"{record['wall_time_s']:.1f} s")
    corpus = {s.key for s in dataset.samples if suite.main_slice in ("all", s.sensor)}
    return _leaderboard(suite, records, skipped, qrels, corpus, out, runs)


def _evaluate_model(
    card: ModelCard, suite: Suite, dataset: Any, out: Path, queries_path: Path, qrels_path: Path,
    topics_key: str, force: bool, entry: SuiteEntry | None = None,
) -> tuple[dict[str, Any], dict[str, Run] | None]:
    """The record of one row (a card, with the entry's index options), and its runs by slice
    when they were computed (not cached). The encoder is loaded once: it builds the index and
    then embeds the queries."""
    from rsretrieve.embeddings import build_pipeline
    from rsretrieve.evaluate import evaluate_index
    from rsretrieve.index import build_index

    started = time.perf_counter()
    entry = entry or SuiteEntry(model=card.name)
    adapters = {**(card.adapters or {}), **{s: a for s, a in (("s2", entry.s2_adapter), ("s1", entry.s1_adapter)) if a}}
    pipeline = build_pipeline(card.spec(), adapters or None, dataset.sensors, bands=entry.bands,
                              dataset_name=str(suite.data or "the embedded sample"))
    index_dir = out / "indexes" / card.name
    with progress.bar(f"{card.name}: embedding", len(dataset.samples)) as advance:
        manifest = build_index(dataset, pipeline, index_dir, suite.batch_size, force=force, on_batch=advance)
    key = hashlib.sha256(json.dumps([manifest["plan_id"], topics_key, list(suite.metrics)]).encode()).hexdigest()
    record_path = out / "records" / card.name / f"{suite.dataset}.json"
    if record_path.is_file() and not force:
        cached = _cached_record(record_path)
        if (cached.get("cache_key") == key and "per_query" in cached
                and all(_run_path(out, card.name, s).is_file() for s in cached["scores"])):
            return {**cached, "cached": True}, None
    evaluation = evaluate_index(index_dir, qrels_path, queries_path, suite.metrics, encoder=pipeline.encoder)
    report, runs = evaluation.report, evaluation.runs
    for name, run in runs.items():
        write_run(run, _run_path(out, card.name, name))
    record = {
        "model": card.name,
        "card": entry.model,
        "options": entry.options(),
        "suite": suite.name,
        "dataset": {**report["source"]["dataset"], "queries": str(queries_path), "qrels": str(qrels_path)},
        "encoder": report["source"]["encoder"],
        "revision": report["source"]["encoder"].get("weights_sha256"),
        "adapters": report["source"]["adapters"],
        "metrics": list(suite.metrics),
        "scores": {name: scored["scores"] for name, scored in report["results"].items()},
        "n_queries": {name: scored["n_queries"] for name, scored in report["results"].items()},
        "per_query": report["per_query"],  # slice -> metric -> query -> score: compare, CIs, p-values
        "n_docs": report["source"]["counts"],
        "diagnostics": report["diagnostics"],
        "references": [dataclasses.asdict(r) for r in suite.references.get(card.name, card.references)
                       if r.dataset == suite.dataset or card.name in suite.references],
        "versions": report["versions"],
        "wall_time_s": round(time.perf_counter() - started, 3),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cache_key": key,
    }
    write_json(record_path, record)
    return record, runs


def _available(card: ModelCard, skipped: list[dict[str, str]], on_model: Callable[[str, str], None] | None) -> bool:
    """Whether the card's weights are present; a model without them is listed as skipped."""
    available, where = card.availability()
    if not available:
        skipped.append({"model": card.name, "reason": where})
        if on_model:
            on_model(card.name, f"skipped: {where}")
    return available


def _run_caption_suite(
    suite: Suite, cards: list[ModelCard], out: Path, force: bool, on_model: Callable[[str, str], None] | None,
) -> dict[str, Any]:
    """Every model of a caption suite through ``caption_report``; a record is reused while the
    card's encoder, the benchmark's files and the protocol are unchanged."""
    from rsretrieve.datasets.rs_captions import RSCaptions
    from rsretrieve.paired import caption_report

    foreign = [c.name for c in cards if c.backend != "open_clip"]
    if foreign:
        raise ConfigError(f"suite {suite.name}: caption benchmarks run open_clip models; '{foreign[0]}' is not one")
    data = RSCaptions(Path(suite.data), split=suite.split, images=suite.images)  # type: ignore[arg-type]
    protocol = suite.protocol or "clip_benchmark"
    records, skipped = [], []
    for card in cards:
        if not _available(card, skipped, on_model):
            continue
        spec = card.spec()
        weights = card.checkpoint_path()
        stamp = [weights.stat().st_size, weights.stat().st_mtime_ns] if weights is not None else None
        key = hashlib.sha256(json.dumps([spec.to_dict(), stamp, data.fingerprint(), protocol, data.split]).encode()).hexdigest()
        record_path = out / "records" / card.name / f"{suite.name}.json"
        if record_path.is_file() and not force:
            cached = _cached_record(record_path)
            if cached.get("cache_key") == key:
                records.append({**cached, "cached": True})
                if on_model:
                    on_model(card.name, "cached")
                continue
        started = time.perf_counter()
        report, _ = caption_report(data.root, spec, protocol, data.split, suite.images)
        scores = report["results"]["all"]["scores"]
        record = {
            "model": card.name, "suite": suite.name, "dataset": report["source"]["dataset"],
            "protocol": protocol, "encoder": report["source"]["encoder"],
            "revision": report["source"]["encoder"].get("weights_sha256"), "metrics": list(suite.metrics),
            "scores": {"all": {m: scores[m] for m in suite.metrics}}, "as_reported": report.get("as_reported"),
            "n_queries": {"all": report["results"]["all"]["n_queries"]}, "n_docs": report["source"]["counts"],
            "references": [dataclasses.asdict(r) for r in suite.references.get(card.name, ())],
            "versions": report["versions"], "wall_time_s": round(time.perf_counter() - started, 3),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cache_key": key,
        }
        write_json(record_path, record)
        records.append(record)
        if on_model:
            on_model(card.name, f"{record['wall_time_s']:.1f} s")
    return _leaderboard(suite, records, skipped, None, set(), out, {})


def _run_path(out: Path, model: str, slice_name: str) -> Path:
    return out / "runs" / f"{model}.{slice_name}.json"


def significance_marks(
    qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Run | Mapping[str, Mapping[str, float]]], corpus: set[str],
    metric: str, sig: Significance, baseline: str | None = None,
) -> dict[str, list[str]]:
    """For each model, the models it beats on ``metric`` with p < max_p (ranx compare); with a
    ``baseline``, also its p-value against that model (under the key ``"p_vs_baseline"``)."""
    from ranx import compare

    from rsretrieve.kernels import ensure_ranx
    from rsretrieve.metrics import DocCodes, ranx_qrels, ranx_run

    ensure_ranx()
    restricted, _ = restrict(dict(qrels), corpus)
    names = list(runs)
    qids = scored_queries(restricted)
    if len(names) < 2 or not qids:
        return {name: [] for name in names}
    codes = DocCodes()
    relevant = ranx_qrels(restricted, qids, codes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = compare(relevant, [ranx_run(runs[name], qids, name, codes) for name in names], [metric],
                         stat_test=sig.test, max_p=sig.max_p).to_dict()
    beats: dict[str, Any] = {}
    for name in names:
        mine = report[name]["scores"][metric]
        beats[name] = [
            other for other, p_values in report[name]["comparisons"].items()
            if p_values[metric] < sig.max_p and mine > report[other]["scores"][metric]
        ]
    if baseline in report:
        beats["p_vs_baseline"] = {name: float(report[name]["comparisons"][baseline][metric]) for name in names if name != baseline}
    return beats


def _leaderboard(
    suite: Suite, records: list[dict[str, Any]], skipped: list[dict[str, str]], qrels: Any, corpus: set[str], out: Path,
    runs: Mapping[str, Run],
) -> dict[str, Any]:
    """Rank records by the main score, mark significant wins, compare with published numbers,
    write json/md/csv. Runs computed in this process are used as they are; those of cached
    records are read from their files."""
    main = (suite.main_slice, suite.main_metric)
    ranked = sorted(records, key=lambda r: (-(r["scores"].get(main[0], {}).get(main[1]) or 0.0), r["model"]))
    if qrels is None:  # paired benchmarks: no qrels-based significance test
        beats: dict[str, list[str]] = {}
    else:
        runs = {r["model"]: runs.get(r["model"]) or read_run(_run_path(out, r["model"], suite.main_slice)) for r in ranked}
        beats = significance_marks(qrels, runs, corpus, suite.main_metric, suite.significance, suite.baseline)
    against = beats.pop("p_vs_baseline", {})
    base_score = next((r["scores"].get(main[0], {}).get(main[1]) for r in records if r["model"] == suite.baseline), None)
    rows = [
        {
            "rank": i + 1,
            "model": r["model"],
            "scores": r["scores"],
            "beats": beats.get(r["model"], []),
            "n_queries": r["n_queries"],
            "n_docs": r["n_docs"],
            "revision": r["revision"],
            "wall_time_s": r["wall_time_s"],
            "paper": paper_differences(r),
            **({"vs_baseline": {"model": suite.baseline, "p": against[r["model"]],
                                "difference": round((r["scores"].get(main[0], {}).get(main[1]) or 0.0) - base_score, 6)}}
               if r["model"] in against and base_score is not None else {}),
        }
        for i, r in enumerate(ranked)
    ]
    add_intervals(rows, {r["model"]: r for r in records}, main, suite.significance.test)
    board = {
        "suite": suite.name,
        "main": {"slice": suite.main_slice, "metric": suite.main_metric},
        "metrics": list(suite.metrics),
        "significance": dataclasses.asdict(suite.significance),
        "significance_tested": qrels is not None,
        "tolerance": suite.tolerance,
        "baseline": suite.baseline,
        "rows": rows,
        "skipped": skipped,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out / "leaderboard.json", board)
    write_text(out / "leaderboard.md", render_markdown(board))
    write_text(out / "leaderboard.csv", render_csv(board))
    return board


def add_intervals(rows: list[dict[str, Any]], records: Mapping[str, Mapping[str, Any]], main: tuple[str, str],
                  test: str) -> None:
    """Beside each row's main score: a 95 % bootstrap interval of its mean over queries, and
    the p-value of the suite's test against the next row (both from per-query scores; rows
    of records without them, such as caption benchmarks', get neither)."""
    import numpy as np

    from rsretrieve.compare import bootstrap_ci, p_value

    def scores(model: str) -> dict[str, float] | None:
        return (records[model].get("per_query") or {}).get(main[0], {}).get(main[1])

    for row, below in zip(rows, [*rows[1:], None]):
        mine = scores(row["model"])
        if not mine:
            continue
        values = np.array([mine[q] for q in sorted(mine)], np.float64)
        row["ci"] = [round(v, 6) for v in bootstrap_ci(values)]
        theirs = scores(below["model"]) if below is not None else None
        if theirs and theirs.keys() == mine.keys():
            p = p_value(values, np.array([theirs[q] for q in sorted(mine)], np.float64), test)
            row["p_next"] = None if p is None else float(f"{p:.6g}")


def paper_differences(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each published score of a record's model next to the one measured here."""
    out = []
    for ref in record.get("references", []):
        ours = record["scores"].get(ref["slice"], {}).get(ref["metric"])
        if ours is not None:
            out.append({"metric": ref["metric"], "slice": ref["slice"], "paper": ref["value"], "ours": ours,
                        "difference": round(ours - ref["value"], 6), "source": ref["source"]})
    return out


def _slices(board: Mapping[str, Any]) -> list[str]:
    return sorted({s for row in board["rows"] for s in row["scores"]}, key=lambda s: (s != "all", s))


def render_markdown(board: Mapping[str, Any]) -> str:
    main_slice, main_metric = board["main"]["slice"], board["main"]["metric"]
    letters = {row["model"]: chr(ord("a") + i) for i, row in enumerate(board["rows"])}
    others = [s for s in _slices(board) if s != main_slice]
    header = ["rank", "model", f"{main_metric} ({main_slice})"]
    header += [f"{m} ({main_slice})" for m in board["metrics"] if m != main_metric]
    header += [f"{main_metric} ({s})" for s in others]
    intervals = any("ci" in row for row in board["rows"])
    if intervals:
        header += ["95% CI", "p vs next"]
    baseline = board.get("baseline")
    if baseline:
        header += [f"vs {baseline}: difference, p"]
    lines = [f"# Leaderboard: {board['suite']}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in board["rows"]:
        scores = row["scores"]
        marks = "".join(letters[m] for m in row["beats"])
        cells = [str(row["rank"]), f"{row['model']} ({letters[row['model']]})",
                 _fmt(scores.get(main_slice, {}).get(main_metric)) + (f"<sup>{marks}</sup>" if marks else "")]
        cells += [_fmt(scores.get(main_slice, {}).get(m)) for m in board["metrics"] if m != main_metric]
        cells += [_fmt(scores.get(s, {}).get(main_metric)) for s in others]
        if intervals:
            cells.append(f"[{row['ci'][0]:.4f}, {row['ci'][1]:.4f}]" if "ci" in row else "-")
            cells.append(f"{row['p_next']:.3g}" if row.get("p_next") is not None else "-")
        if baseline:
            versus = row.get("vs_baseline")
            cells.append(f"{versus['difference']:+.4f}, p = {versus['p']:.3g}" if versus else "-")
        lines.append("| " + " | ".join(cells) + " |")
    sig = board["significance"]
    if any(row["beats"] for row in board["rows"]) or board.get("significance_tested", True):
        lines += ["", f"Superscripts: significantly better than those models on {main_metric} ({main_slice}), "
                  f"paired {sig['test']} test, p < {sig['max_p']}."]
    if intervals:
        lines += ["", f"95% CI: bootstrap over queries (resampled with replacement) of the mean {main_metric} ({main_slice}), 10,000 resamples; "
                  f"p vs next: the {sig['test']} test against the row below. `rsretrieve compare` shows any pair query by query."]
    compared = [(row["model"], entry) for row in board["rows"] for entry in row.get("paper", [])]
    if compared:
        lines += ["", "Published numbers (difference = measured here - paper):", "",
                  "| model | metric (slice) | paper | here | difference | source |", "|---|---|---|---|---|---|"]
        lines += [f"| {model} | {e['metric']} ({e['slice']}) | {e['paper']:.4f} | {e['ours']:.4f} | {e['difference']:+.4f} | {e['source']} |"
                  for model, e in compared]
    if board["skipped"]:
        total = len(board["rows"]) + len(board["skipped"])
        lines += ["", f"**Incomplete: {len(board['skipped'])} of {total} models skipped; their rows are missing:**", ""]
        lines += [f"- {entry['model']}: {entry['reason']}" for entry in board["skipped"]]
    return "\n".join(lines) + "\n"


def render_csv(board: Mapping[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    slices = _slices(board)
    writer.writerow(["rank", "model", *[f"{m}@{s}" for s in slices for m in board["metrics"]], "beats"])
    for row in board["rows"]:
        values = [_fmt(row["scores"].get(s, {}).get(m)) for s in slices for m in board["metrics"]]
        writer.writerow([row["rank"], row["model"], *values, " ".join(row["beats"])])
    return buffer.getvalue()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def check_against(board: Mapping[str, Any], expected: Mapping[str, Any], tolerance: float | None = None) -> list[str]:
    """Differences from an expected leaderboard: ranking changes and scores beyond tolerance."""
    tol = board["tolerance"] if tolerance is None else tolerance
    problems = []
    got_order = [r["model"] for r in board["rows"]]
    want_order = [r["model"] for r in expected["rows"]]
    if got_order != want_order:
        problems.append(f"ranking changed: expected {' > '.join(want_order)}, got {' > '.join(got_order)}")
    got = {r["model"]: r["scores"] for r in board["rows"]}
    for row in expected["rows"]:
        mine = got.get(row["model"])
        if mine is None:
            problems.append(f"{row['model']}: missing from the leaderboard")
            continue
        for slice_name, metrics in row["scores"].items():
            for metric, want in metrics.items():
                have = mine.get(slice_name, {}).get(metric)
                if want is None and have is None:
                    continue
                if want is None or have is None or abs(have - want) > tol:
                    problems.append(f"{row['model']} {metric} ({slice_name}): expected {_fmt(want)}, got {_fmt(have)} (tolerance {tol})")
    return problems


def expected_view(board: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a leaderboard that a reproduction check compares (no times, no dates)."""
    return {
        "suite": board["suite"], "main": board["main"], "tolerance": board["tolerance"],
        "rows": [{"model": r["model"], "scores": r["scores"]} for r in board["rows"]],
    }


def _cached_record(path: Path) -> dict[str, Any]:
    """A result record written by an earlier run ({} when it is damaged: it is computed again)."""
    try:
        return read_json_object(path, DataError, "a result record", ("cache_key", "scores"))
    except DataError as exc:
        warn(f"{exc}; computing it again")
        return {}


def read_expected(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise DataError(f"expected leaderboard {path} not found")
    data = read_json_object(Path(path), DataError, "an expected leaderboard", ("rows",))
    if not isinstance(data["rows"], list):
        raise DataError(f"{path}: not an expected leaderboard (field 'rows' must be a list)")
    return data



@dataclasses.dataclass(frozen=True)
class LeaderboardOutput:
    """What ``rsretrieve leaderboard`` produced: the board, its folder, and the check's drift
    lines (empty when it matches or nothing was checked)."""

    board: dict[str, Any]
    folder: Path
    drift: list[str]

    def incomplete(self) -> str | None:
        """The one line that says a reproduction is partial (models skipped), or None."""
        skipped = self.board.get("skipped") or []
        if not skipped:
            return None
        total = len(self.board["rows"]) + len(skipped)
        names = ", ".join(s["model"] for s in skipped[:6]) + (f" and {len(skipped) - 6} more" if len(skipped) > 6 else "")
        return (f"incomplete: {len(skipped)} of {total} models skipped (missing weights: {names}); `rsretrieve models "
                "--missing --suite SUITE` lists what to download; --allow-missing accepts a partial table")


def zoo_summaries(missing: bool = False, suite: Path | None = None) -> list[dict[str, Any]]:
    """``rsretrieve models``: every card, or those a suite runs (``suite``), only those whose
    weights are not here (``missing``): what a reproduction still needs."""
    zoo = load_zoo()
    names = list(zoo)
    if suite is not None:
        loaded = load_suite(suite)
        names = list(dict.fromkeys(e.model for e in loaded.entries))
        for name in names:
            get_card(name, zoo)
    summaries = [card_summary(zoo[name]) for name in names]
    return [s for s in summaries if not s["available"]] if missing else summaries


def check_suite_data(suite: Suite, suite_file: Path) -> None:
    """The suite's dataset folder exists, before any model loads; a missing one says where the
    release is published and how to point the suite at it."""
    if suite.data is None or Path(suite.data).exists():
        return
    where = RELEASES.get(suite.dataset)
    got = f"; it is published as {where}" if where else ""
    raise DataError(f"suite {suite_file}: dataset folder {suite.data} not found{got}; then run the suite with "
                    f"--data DIR (or set data: in the suite)")


def run_leaderboard(
    suite_file: Path, out: Path | None = None, check: Path | None = None, write_expected: Path | None = None,
    force: bool = False, on_model: Callable[[str, str], None] | None = None, data: Path | None = None,
) -> LeaderboardOutput:
    """What ``rsretrieve leaderboard`` runs: the suite at ``suite_file`` into ``out`` (default
    results/<suite name>), on ``data`` when given (``--data``, over the suite's), optionally
    saved as the expected file and checked against one."""
    suite = load_suite(suite_file)
    if data is not None:
        suite = dataclasses.replace(suite, data=str(data))
    check_suite_data(suite, suite_file)
    expected = read_expected(check) if check is not None else None
    folder = Path(out) if out is not None else Path("results") / suite.name
    check_writable(folder, folder=True)  # every output, before any model runs
    if write_expected is not None:
        check_writable(Path(write_expected))
    with output_lock(folder):
        board = run_suite(suite, folder, force=force, on_model=on_model)
    if write_expected is not None:
        write_json(Path(write_expected), expected_view(board))
    return LeaderboardOutput(board, folder, check_against(board, expected) if expected is not None else [])
