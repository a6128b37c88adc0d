"""Rich rendering for the CLI: progress bars and tables. No logic lives here."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperArgument, TyperOption

from rsretrieve.encoders import EncoderSpec
from rsretrieve.errors import DataError
from rsretrieve.runs import Run

SLICE_NAMES = {
    "all": "all", "s2": "Sentinel-2", "s1": "Sentinel-1",
    "s2-filtered": "S2 (filtered)", "s1-filtered": "S1 (filtered)",
}


PLAIN_EVERY_S = 5.0  # outside a terminal: at most one progress line this often


@contextmanager
def progress(console: Console, label: str, total: int | None = None) -> Iterator["Bar"]:
    """Yield a bar: call it with n to advance, ``start(total)`` once the total is known. The
    bar appears with the first call, so an error before any work prints no empty line.
    Outside a terminal (CI logs, nohup, a cluster job) it prints plain lines instead: stage,
    done/total and rate, at most one every few seconds, and one when the step ends."""
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=console, transient=True, disable=not console.is_terminal)
    handle = Bar(bar, bar.add_task(label, total=total), None if console.is_terminal else _Lines(console, label, total))
    ok = False
    try:
        yield handle
        ok = True
    finally:
        if handle.started:
            bar.stop()
        if ok and handle.lines is not None:
            handle.lines.end()


class _Lines:
    """Plain progress lines: "embedding: 640/2400 (27%), 41.3/s"."""

    def __init__(self, console: Console, label: str, total: int | None) -> None:
        import time

        self.console, self.label, self.total, self.done = console, label, total, 0
        self.clock = time.monotonic
        self.began = self.last = self.clock()

    def begin(self, total: int) -> None:
        """The work starts now: rates count from here, not from the model loading before."""
        self.total, self.began = total, self.clock()
        self.last = self.began

    def advance(self, n: int) -> None:
        self.done += n
        now = self.clock()
        finished = self.total is not None and self.done >= self.total  # the "done" line follows
        if self.done and not finished and now - self.last >= PLAIN_EVERY_S:
            self.last = now
            self._print(now, "")

    def end(self) -> None:
        if self.done:
            self._print(self.clock(), "done, ")

    def _print(self, now: float, prefix: str) -> None:
        elapsed = max(now - self.began, 1e-9)
        of = f"/{self.total} ({100 * self.done / self.total:.0f}%)" if self.total else ""
        self.console.print(f"{self.label}: {prefix}{self.done}{of}, {self.done / elapsed:.1f}/s, {elapsed:.0f} s",
                           markup=False, highlight=False, soft_wrap=True)


class Bar:
    def __init__(self, progress_bar: Progress, task: Any, lines: _Lines | None = None) -> None:
        self._progress, self._task, self.lines = progress_bar, task, lines
        self.started = False

    def _show(self) -> None:
        if not self.started:
            self.started = True
            self._progress.start()

    def __call__(self, n: int) -> None:
        self._show()
        self._progress.advance(self._task, n)
        if self.lines is not None:
            self.lines.advance(n)

    def start(self, total: int) -> None:
        self._show()
        self._progress.update(self._task, total=total)
        if self.lines is not None:
            self.lines.begin(total)


def reporter(console: Console) -> Any:
    """What the library's ``progress.stage`` and ``progress.bar`` print to, for one command."""
    from rsretrieve.progress import Reporter

    return Reporter(say=lambda message: console.print(f"{message} ...", style="dim", markup=False, soft_wrap=True),
                    bar=lambda label, total: progress(console, label, total))


@contextmanager
def training_progress(console: Console) -> Iterator[tuple[Callable[[int, float], None], Callable[[Mapping[str, Any]], None]]]:
    """Yield (on_step, on_epoch) callbacks: a spinner with the running loss, a line per epoch."""
    columns = (TextColumn("{task.description}"), TextColumn("samples {task.completed:.0f}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("training", total=None)

        def on_step(n: int, loss: float) -> None:
            bar.update(task, advance=n, description=f"training  loss {loss:.4f}")

        def on_epoch(entry: Mapping[str, Any]) -> None:
            console.print(
                f"epoch {entry['epoch']:3d}  loss {entry['loss']:.4f}  val ndcg@10 {entry['ndcg@10']:.4f}  "
                f"map@100 {entry['map@100']:.4f}  ({entry['seconds']:.1f} s)"
            )

        yield on_step, on_epoch


def training_summary(console: Console, folder: Path, record: Mapping[str, Any]) -> None:
    untrained = record["history"][0]["ndcg@10"]
    console.print(
        f"best epoch {record['best_epoch']}: validation ndcg@10 {record['best_ndcg@10']:.4f} "
        f"(untrained {untrained:.4f}); model in {folder / 'best'} (use --model {folder / 'best'})"
    )


def index_summary(console: Console, folder: Path, manifest: Mapping[str, Any], warn: Console | None = None) -> None:
    counts = ", ".join(f"{k}={v}" for k, v in manifest["counts"].items())
    enc = manifest["encoder"]
    spec = EncoderSpec.from_manifest(enc)
    state = "reused as it is (dataset, encoder and settings unchanged)" if manifest.get("reused") else "built"
    console.print(
        f"index {folder} {state}: {counts}; encoder {spec.label()}, "
        f"adapters {manifest['adapters']}, {manifest['index']['kind']} index, "
        f"{manifest['nonfinite_pixels']} non-finite pixels replaced",
        markup=False, soft_wrap=True,
    )
    worst = manifest.get("nonfinite_keys") or {}
    if worst and warn is not None:
        shown = ", ".join(f"{k} ({n})" for k, n in worst.items())
        warn.print(f"warning: samples with the most NaN/inf pixels: {shown}", markup=False, soft_wrap=True)
    for key in manifest.get("all_nonfinite_keys") or []:
        if warn is not None:
            warn.print(f"warning: key '{key}' has no finite pixel: it is indexed as a blank patch", markup=False, soft_wrap=True)


def hits(console: Console, run: Run, queries: Mapping[str, str], labels: Mapping[str, list[str]], limit: int,
         places: Mapping[str, tuple[float, float]] | None = None) -> None:
    """One table per query; with ``places`` (key -> lon, lat) two location columns."""
    for qid in run.qids:
        table = Table(title=f"{qid}: {queries[qid]}")
        for column in ("rank", "score", "key", "labels", *(("lon", "lat") if places is not None else ())):
            table.add_column(column)
        for rank, (doc, score) in enumerate(run.ranked(qid)[:limit], start=1):
            where = [] if places is None else [f"{v:.4f}" if v == v else "-" for v in places.get(doc, (np.nan, np.nan))]
            table.add_row(str(rank), f"{score:.4f}", doc, ", ".join(labels.get(doc, [])), *where)
        console.print(table)


def report(console: Console, warn: Console, result: Mapping[str, Any]) -> None:
    """Metrics table (rows: metrics; columns: slices) and the diagnostics as warnings."""
    slices = result["results"]
    table = Table(title="retrieval metrics")
    table.add_column("metric")
    for name in slices:
        table.add_column(SLICE_NAMES.get(name, name), justify="right")
    table.add_row("queries", *(str(scored["n_queries"]) for scored in slices.values()))
    for metric in result["metrics"]:
        values = (scored["scores"][metric] for scored in slices.values())
        table.add_row(metric, *(f"{v:.4f}" if v is not None else "-" for v in values))
    console.print(table)
    protocol = result.get("source", {}).get("protocol")
    if protocol:
        console.print(f"protocol {protocol['name']}: {protocol['source']}", markup=False, soft_wrap=True)
    if result.get("as_reported"):
        console.print("as the protocol's script prints them (percent): "
                      + ", ".join(f"{name} {value:.2f}" for name, value in result["as_reported"].items()), markup=False, soft_wrap=True)
    for name, spread in result.get("ties", {}).items():
        warn.print(f"note: {name}: tied scores straddle the cutoff for {_count(spread['queries'], 'query', 'queries')}; "
                   f"any order of the ties gives {spread['pessimistic']:.4f} to {spread['optimistic']:.4f} "
                   "(the value above is the reference script's own order)", markup=False, soft_wrap=True)
    for field, groups in result.get("groups", {}).items():
        grouped = Table(title=f"by {field} (all)")
        grouped.add_column(field)
        grouped.add_column("queries", justify="right")
        for metric in result["metrics"]:
            grouped.add_column(metric, justify="right")
        for value, entry in groups.items():
            grouped.add_row(value, str(entry["n_queries"]), *(f"{entry['scores'][m]:.4f}" for m in result["metrics"]))
        console.print(grouped)
    diag = result["diagnostics"]
    if diag["queries_without_judgements"]:
        n = len(diag["queries_without_judgements"])
        warn.print(f"warning: {_count(n, 'query has', 'queries have')} no judgements and {'was' if n == 1 else 'were'} not scored: "
                   + ", ".join(diag["queries_without_judgements"][:5]))
    region = result.get("source", {}).get("region")
    if region:
        warn.print(f"note: region {', '.join(f'{k} {v}' for k, v in region.items() if k != 'documents')}: "
                   f"{region['documents']} documents; {diag.get('judged_docs_outside_region', 0)} judged documents lie outside it "
                   "and were left out of the qrels")
    if diag["judged_docs_not_in_corpus"]:
        warn.print(f"warning: {diag['judged_docs_not_in_corpus']} judged documents are not in the corpus "
                   f"(e.g. {', '.join(diag['judged_docs_not_in_corpus_examples'][:3])}); they were left out of the qrels")
    for entry in diag.get("shallow_runs", []):
        warn.print(f"warning: {SLICE_NAMES.get(entry['slice'], entry['slice'])}: {entry['metric']} is computed on a run "
                   f"only {entry['depth']} deep ({entry['documents']} documents in the slice); documents below that "
                   "depth count as not retrieved")
    for name, scored in result["results"].items():
        left_out = len(scored.get("queries_without_relevant", []))
        if left_out:
            warn.print(f"note: {SLICE_NAMES.get(name, name)}: {_count(left_out, 'judged query', 'judged queries')} "
                       f"{'has' if left_out == 1 else 'have'} no relevant document in this slice and "
                       f"{'was' if left_out == 1 else 'were'} left out of its means")
    if any(name.endswith("-filtered") for name in result["results"]):
        warn.print("note: the (filtered) columns are the all-sensor run with the other sensor's documents removed, "
                   "not retrieval over one sensor's documents; eval --index --save-run saves the per-sensor runs")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def models(console: Console, cards: list[Mapping[str, Any]], checkpoints: Path) -> None:
    """One block per card: whether its weights are here, where they come from and go, the command."""
    def line(text: str, style: str | None = None) -> None:
        console.print(text, markup=False, soft_wrap=True, style=style)

    line(f"model zoo: {len(cards)} cards; checkpoints folder {checkpoints}\n" if cards else
         f"nothing to download: every card asked for has its weights (checkpoints folder {checkpoints})")
    for card in cards:
        line(f"{card['name']}  [{card['backend']}]  weights {'present' if card['available'] else 'MISSING'}: {card['weights']}")
        line(f"  {card['description']}", "dim")
        for label, key in (("from:  ", "source"), ("put at:", "put_at")):
            if card[key] != "-":
                line(f"  {label} {card[key]}")
        line(f"  use:    {card['command']}")
        if card["notes"]:
            line(f"  note:   {card['notes']}")
        line("")


def check_report(console: Console, report: Mapping[str, Any]) -> None:
    """Counts per source, then one row per kind of problem with example keys."""
    counts = report["counts"]
    splits = ", ".join(f"{k} {v}" for k, v in sorted(counts["splits"].items()))
    console.print(f"{report['dataset']}: {counts['keys']} keys ({splits}), {counts['read']} images read", markup=False, soft_wrap=True)
    sources = Table(title="sources")
    for column in ("source", "sensor", "samples", "non-finite px", "blank", "constant", "mean of key bands (all in JSON)"):
        sources.add_column(column, overflow="fold")
    shown = {"VV", "VH", "B04", "B08", "B11"}
    for name, s in report["sources"].items():
        means = ", ".join(f"{b} {v['mean']:.4g}" for b, v in s["bands"].items() if v["mean"] is not None and b in shown)
        sources.add_row(name, s["sensor"], str(s["samples"]), str(s["nonfinite_pixels"]), str(s["blank_patches"]),
                        str(s["constant_patches"]), means)
    console.print(sources)
    if not report["problems"]:
        console.print("no problems found", markup=False)
        return
    problems = Table(title="problems")
    for column in ("level", "code", "count", "what", "examples"):
        problems.add_column(column, overflow="fold")
    for p in report["problems"]:
        problems.add_row(p["level"], p["code"], str(p["count"]), p["message"], ", ".join(p["examples"]))
    console.print(problems)


def captions(console: Console, title: str, hits: list[Mapping[str, Any]]) -> None:
    table = Table(title=title)
    for column in ("rank", "score", "img_name", "caption", "quality", "res (m)", "lon, lat"):
        table.add_column(column, overflow="fold", min_width=30 if column == "caption" else None)
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), f"{hit['score']:.4f}", hit["img_name"], hit["caption"], f"{hit['quality']:.2f}",
                      f"{hit['resolution']:g}", f"{hit['lon']:.3f}, {hit['lat']:.3f}")
    console.print(table)


def caption_index_summary(console: Console, folder: Path, manifest: Mapping[str, Any]) -> None:
    state = "reused as it is (captions, encoder and settings unchanged)" if manifest.get("reused") else "built"
    console.print(f"caption index {folder} {state}: {manifest['counts']['total']} captions, {manifest['index']['factory']}, "
                  f"{manifest['bytes'] / 1e6:.1f} MB", markup=False, soft_wrap=True)
    skipped = manifest.get("skipped_rows") or {}
    if skipped.get("count"):
        first = skipped["examples"][0]
        console.print(f"skipped {skipped['count']} rows (lenient, the default; --strict refuses them; listed in manifest.json), the first: {first['shard']} "
                      f"row {first['row']} (img_name '{first['img_name']}'): {first['reason']}", markup=False, soft_wrap=True)


def caption_search(console: Console, warn: Console, topics: Mapping[str, str], found: Any,
                   hits_out: Path | None, written: int | None) -> None:
    """Caption hits per query, or where they were written (``found``: a CaptionSearch); a note
    when they came from an approximate index."""
    from rsretrieve.index import EXACT_FILTER_ROWS

    if found.empty_filter:
        warn.print(f"note: {found.empty_filter}", markup=False, soft_wrap=True)
    elif found.approximate:
        warn.print(f"note: {found.factory} is an approximate index: unfiltered hits may differ from exact search; "
                   f"filtered searches score every passing caption when at most {EXACT_FILTER_ROWS:,} pass, else widen "
                   "until k pass", markup=False, soft_wrap=True)
    if hits_out is not None:
        console.print(f"wrote {written} caption hits to {hits_out}")
        return
    for (qid, query), hits in zip(topics.items(), found.hits):
        captions(console, f"{qid}: {query}", hits)


def search_results(console: Console, run: Run, topics: Mapping[str, str], index: Any, run_out: Path | None,
                   shown: int, filters: Sequence[str] = ()) -> None:
    """The top ``shown`` hits of each query (``-k``), or where the run was written
    (``index``: the LoadedIndex; ``filters``: the filter options given, named when nothing passes)."""
    if len(run.docs) == 0:
        console.print(f"no document passes the filters given ({', '.join(filters)}): nothing to rank" if filters
                      else "the index holds no document to rank")
    if run_out is not None:
        console.print(f"wrote run for {len(run)} queries to {run_out}")
    else:
        try:  # only the rows the run holds: the table shows a few of a large corpus
            places = {index.keys[r]: tuple(index.locations[r]) for r in np.unique(run.docs).tolist()}
        except DataError:  # an index written before locations were stored
            places = None
        hits(console, run, topics, dict(zip(index.keys, index.labels)), limit=shown, places=places)


def leaderboard(console: Console, warn: Console, result: Any, check: Path | None, write_expected: Path | None,
                allow_missing: bool = False) -> None:
    """The leaderboard's table, where it went, and the reproduction check (``result``: a LeaderboardOutput)."""
    console.print((result.folder / "leaderboard.md").read_text(), markup=False, soft_wrap=True)
    console.print(f"leaderboard written to {result.folder}/leaderboard.{{md,csv,json}}", markup=False)
    incomplete = result.incomplete()
    if incomplete:
        warn.print(("note: " if allow_missing else "error: ") + incomplete, markup=False, soft_wrap=True)
    if write_expected is not None:
        console.print(f"expected leaderboard written to {write_expected}", markup=False)
    if check is None:
        return
    for line in result.drift:
        warn.print(f"drift: {line}", markup=False)
    if result.drift:
        warn.print(f"leaderboard check against {check} failed ({len(result.drift)} differences)", markup=False)
    else:
        console.print(f"leaderboard matches {check} (tolerance {result.board['tolerance']})", markup=False)


def _flag_type(self: TyperOption, ctx: object) -> str | None:
    """A flag takes no value: its help row shows no `<bool>` as if it did (typer shows one)."""
    return None if self.is_flag else _value_type(self, ctx)


_value_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]


def comparison(console: Console, result: Any) -> None:
    """``compare``'s tables (``result``: a CompareOutput): per slice, one row per metric; then
    the queries that differ most each way."""
    first, second = result.first.name, result.second.name
    console.print(f"first: {first} ({result.first.path})\nsecond: {second} ({result.second.path})", markup=False,
                  soft_wrap=True)
    for slice_name in dict.fromkeys(d.slice for d in result.differences):
        rows = [d for d in result.differences if d.slice == slice_name]
        table = Table(title=f"{SLICE_NAMES.get(slice_name, slice_name)}: {rows[0].n_queries} queries, difference = first - second")
        for column in ("metric", "first", "second", "difference", "95% CI", f"p ({result.test})", "wins / ties / losses"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for d in rows:
            p = "-" if d.p_value is None else f"{d.p_value:.3g}"
            table.add_row(d.metric, f"{d.first:.4f}", f"{d.second:.4f}", f"{d.difference:+.4f}",
                          f"[{d.ci[0]:+.4f}, {d.ci[1]:+.4f}]", p, f"{d.wins} / {d.ties} / {d.losses}")
        console.print(table)
    for d in result.differences:
        if d.slice != result.differences[0].slice:
            break
        for who, rows in ((first, d.first_better), (second, d.second_better)):
            if rows:
                console.print(f"{d.metric} ({d.slice}), {who} better:", markup=False, highlight=False)
                for row in rows:
                    text = result.texts.get(row["query"], "")
                    console.print(f"  {row['query']}  {row['first']:.4f} vs {row['second']:.4f}  {text}",
                                  markup=False, highlight=False, soft_wrap=True)
    for path in result.written:
        console.print(f"wrote {path}", markup=False, soft_wrap=True)


def _usage_pieces(self: TyperArgument, ctx: object) -> list[str]:
    """A hidden argument (an old positional kept for scripts) stays out of the usage line too."""
    return [] if self.hidden else _argument_pieces(self, ctx)


_argument_pieces = TyperArgument.get_usage_pieces
TyperArgument.get_usage_pieces = _usage_pieces  # type: ignore[method-assign]
