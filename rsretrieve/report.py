"""A static HTML report of a leaderboard folder: works offline, no server, no CDN.

The page (index.html) shows the leaderboard table and, as PNG files beside it, bar charts of
every metric across models, the main score per sensor, the main score per query (for label
queries: per label), 11-point interpolated precision-recall curves, and query grids of the
best model's top patches with relevant ones outlined in green.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.datasets.queries import Qrels, load_qrels, load_queries
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.evaluate import restrict, score_run
from rsretrieve.io import atomic_dir, check_writable, read_json_object
from rsretrieve.progress import stage
from rsretrieve.runs import Run, as_run, read_run

RECALL_LEVELS = np.linspace(0.0, 1.0, 11)


def interpolated_pr(qrels: Qrels, run: Run | Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """Mean interpolated precision at recall 0.0, 0.1, ..., 1.0 over queries with a relevant doc."""
    run = as_run(run)
    curves = []
    for qid, judged in qrels.items():
        relevant = {d for d, r in judged.items() if r > 0}
        if not relevant:
            continue
        ranked = [d for d, _ in run.ranked(qid)]
        hits = np.cumsum([d in relevant for d in ranked]) if ranked else np.zeros(0)
        precision = hits / np.arange(1, len(ranked) + 1) if ranked else np.zeros(0)
        recall = hits / len(relevant) if ranked else np.zeros(0)
        curves.append([precision[recall >= level].max(initial=0.0) for level in RECALL_LEVELS])
    return np.mean(curves, axis=0) if curves else np.zeros(len(RECALL_LEVELS))


DPI = 120


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bar_figure(groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str) -> Any:
    """Grouped bars with the legend outside the plot area, so that no bar hides behind it
    (a score of 1.0 reaches the top, where an inside legend would sit)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(groups) + 2), 3.6), dpi=DPI)
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + i * width - 0.4 + width / 2, [v if v is not None else 0.0 for v in values], width, label=name)
    ax.set_xticks(x, groups, rotation=30 if len(groups) > 6 else 0, ha="right" if len(groups) > 6 else "center", fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _legend_outside(ax)
    return fig


def _legend_outside(ax: Any) -> None:
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, bbox_inches="tight")  # the crop keeps the legend beside the axes
    _plt().close(fig)


def _bars(path: Path, groups: Sequence[str], series: Mapping[str, Sequence[float]], title: str, ylabel: str) -> None:
    _save(_bar_figure(groups, series, title, ylabel), path)


def _pr_plot(path: Path, curves: Mapping[str, np.ndarray]) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4), dpi=DPI)
    for name, curve in curves.items():
        ax.plot(RECALL_LEVELS, curve, marker="o", label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("interpolated precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("precision-recall (all)")
    _legend_outside(ax)
    _save(fig, path)


def _baseline_chart(path: Path, board: Mapping[str, Any]) -> tuple[str, str]:
    """The main score of every row, each labelled with its p-value against the suite's
    baseline (a band ablation: every subset against all bands)."""
    main_slice, main_metric, baseline = board["main"]["slice"], board["main"]["metric"], board["baseline"]
    max_p = board.get("significance", {}).get("max_p", 0.05)
    labels = []
    for row in board["rows"]:
        versus = row.get("vs_baseline")
        if row["model"] == baseline:
            labels.append(f"{row['model']} (baseline)")
        elif versus:
            labels.append(f"{row['model']} (p={versus['p']:.2g}{'*' if versus['p'] < max_p else ''})")
        else:
            labels.append(row["model"])
    values = [row["scores"].get(main_slice, {}).get(main_metric) for row in board["rows"]]
    _bars(path, labels, {main_metric: values}, f"{main_metric} ({main_slice}) per row; * p < {max_p} against {baseline}", main_metric)
    return path.name, f"{main_metric} per row, significance against {baseline}"


def _record(results: Path, model: str) -> dict[str, Any]:
    files = sorted((results / "records" / model).glob("*.json"))
    if not files:
        raise DataError(f"{results}: no result record for model '{model}' under records/{model}/")
    return read_json_object(files[0], DataError, "a result record", ("scores",))


def build_report(results: Path, out: Path, grids: int = 3, k: int = 8, pair: Sequence[str] | None = None) -> Path:
    """Write the report folder ``out`` for the leaderboard folder ``results``; with two rows
    or more, a comparison page (compare.html) of ``pair`` [the top two]."""
    from rsretrieve.visualize import grid, hits_map, query_tiles

    results = Path(results)
    check_writable(Path(out), folder=True)  # before any chart is drawn
    board_path = results / "leaderboard.json"
    if not board_path.is_file():
        raise DataError(f"{results} is not a leaderboard folder: leaderboard.json not found (run rsretrieve leaderboard)")
    board = read_json_object(board_path, DataError, "a leaderboard", ("rows", "metrics"))
    rows = board["rows"]
    if not isinstance(rows, list) or not all(isinstance(row, dict) and "model" in row for row in rows):
        raise DataError(f"{board_path}: not a leaderboard (field 'rows' must be a list of rows naming their model)")
    models = [row["model"] for row in rows]
    if not models:
        raise DataError(f"{board_path}: no evaluated models")
    records = {m: _record(results, m) for m in models}
    if pair is not None and len(pair) != 2:
        raise ConfigError(f"--compare takes two models of the leaderboard, 'A,B' (got {len(pair)}: {', '.join(pair)})")
    if not board.get("significance_tested", True):  # a paired (caption) benchmark: no qrels
        if pair is not None:
            raise ConfigError(f"--compare needs per-query scores; {board_path} is a caption-benchmark leaderboard, "
                              "whose records keep only the benchmark's recall")
        return _paired_report(board, records, models, Path(out))
    if not isinstance(board.get("main"), dict) or not {"metric", "slice"} <= set(board["main"]):
        raise DataError(f"{board_path}: not a leaderboard (field 'main' must name the main metric and slice)")
    first = records[models[0]]
    queries = load_queries(first["dataset"]["queries"])
    qrels = load_qrels(first["dataset"]["qrels"])
    main_metric, main_slice = board["main"]["metric"], board["main"]["slice"]
    runs = {m: read_run(results / "runs" / f"{m}.all.json") for m in models}
    index_keys = set().union(*(run.names for run in runs.values()))
    restricted, _ = restrict(qrels, index_keys | {d for docs in qrels.values() for d in docs})
    slices = sorted({s for row in board["rows"] for s in row["scores"]}, key=lambda s: (s != "all", s))
    with atomic_dir(Path(out), replace=True, what="an rsretrieve report") as tmp:
        stage(f"drawing charts, precision-recall curves and query grids of {len(models)} models")
        _bars(tmp / "metrics.png", board["metrics"],
              {m: [records[m]["scores"]["all"].get(metric) for metric in board["metrics"]] for m in models},
              "all metrics (all sensors)", "score")
        _bars(tmp / "sensors.png", slices, {m: [records[m]["scores"].get(s, {}).get(main_metric) for s in slices] for m in models},
              f"{main_metric} per sensor", main_metric)
        per_query = {m: score_run(restricted, runs[m], [main_metric])["per_query"].get(main_metric, {}) for m in models}
        judged = [q for q in queries if q in per_query[models[0]]]
        labels = [queries[q].removeprefix("satellite image of ") for q in judged]
        _bars(tmp / "labels.png", labels, {m: [per_query[m].get(q) for q in judged] for m in models},
              f"{main_metric} per query (label)", main_metric)
        _pr_plot(tmp / "pr.png", {m: interpolated_pr(restricted, runs[m]) for m in models})
        grid_files = []
        best_index = results / "indexes" / models[0]
        if best_index.is_dir():
            from rsretrieve.index import load_index

            index = load_index(best_index)
            for n, qid in enumerate(judged[:grids]):
                top = dict(runs[models[0]].ranked(qid)[:k])
                image = grid(query_tiles(index, top, judged=qrels.get(qid, {})), columns=4)
                name = f"grid-{n}.png"
                image.save(tmp / name)
                grid_files.append((name, qid, queries[qid]))
                where = hits_map(index, top, qrels.get(qid, {}), f"{qid}: where the top {len(top)} are")
                if where is not None:
                    where.save(tmp / f"map-{n}.png")
                    grid_files.append((f"map-{n}.png", qid, f"{queries[qid]} (map of the same hits)"))
        figures = (("metrics.png", "every metric across models"), ("sensors.png", f"{main_metric} per sensor"),
                   ("labels.png", f"{main_metric} per query"), ("pr.png", "precision-recall curves"))
        if board.get("baseline"):
            figures = (*figures, _baseline_chart(tmp / "baseline.png", board))
        # a pair asked for is drawn or refused; the top two only when their records keep
        # per-query scores (records written before rsretrieve kept them have none)
        kept = all("per_query" in records[m] for m in models[:2])
        compared = _comparison_page(results, tmp, board, pair, k) if len(models) > 1 and (pair or kept) else None
        (tmp / "index.html").write_text(_html(board, records, figures, grid_files, main_metric, main_slice, compared),
                                        encoding="utf-8")
    return Path(out) / "index.html"


def _comparison_page(results: Path, folder: Path, board: Mapping[str, Any], pair: Sequence[str] | None, k: int) -> str:
    """compare.html: two models on the main slice, every metric, a per-query difference chart
    of the main metric and side-by-side grids of the queries that differ most; returns the
    pair's names, for the link from index.html."""
    from rsretrieve.compare import compare_sides, comparison_grids, leaderboard_sides, query_texts

    first, second = leaderboard_sides(results, board, *(pair or (None, None)))
    stage(f"drawing the comparison page of {first.name} and {second.name}")
    main_metric, main_slice = board["main"]["metric"], board["main"]["slice"]
    test = str(board.get("significance", {}).get("test", "student"))
    differences = compare_sides(first, second, [main_metric, *[m for m in board["metrics"] if m != main_metric]],
                                [main_slice], test, top=3)
    scores = first.per_query[main_slice][main_metric], second.per_query[main_slice][main_metric]
    ordered = sorted(scores[0], key=lambda q: (scores[1][q] - scores[0][q], q))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(ordered)), 3.6))
    values = [scores[0][q] - scores[1][q] for q in ordered]
    ax.bar(range(len(ordered)), values, color=["#1f77b4" if v > 0 else "#d62728" for v in values])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("queries, by difference")
    ax.set_ylabel(f"{main_metric}: {first.name} - {second.name}")
    ax.set_title(f"per-query difference ({main_slice}): blue {first.name} better, red {second.name} better", fontsize=9)
    _save(fig, folder / "compare-difference.png")
    texts = query_texts(first)
    grids = comparison_grids(first, second, differences[0], folder, texts, k)
    queries = [row["query"] for row in (*differences[0].first_better, *differences[0].second_better)]  # the grids' order
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(d.metric)}</td><td>{_num(d.first)}</td><td>{_num(d.second)}</td><td>{d.difference:+.4f}</td>"
        f"<td>[{d.ci[0]:+.4f}, {d.ci[1]:+.4f}]</td><td>{'-' if d.p_value is None else f'{d.p_value:.3g}'}</td>"
        f"<td>{d.wins} / {d.ties} / {d.losses}</td></tr>" for d in differences)
    figures = "".join(f'<figure><img src="{p.name}" alt="{esc(p.stem)}"><figcaption>{esc(p.stem)}: '
                      f'{esc(texts.get(qid, ""))}</figcaption></figure>' for p, qid in zip(grids, queries))
    (folder / "compare.html").write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rsretrieve: {esc(first.name)} vs {esc(second.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}figure{{margin:1em 0}}img{{max-width:100%}}</style></head>
<body><p><a href="index.html">leaderboard</a></p>
<h1>{esc(first.name)} vs {esc(second.name)}</h1>
<p>{differences[0].n_queries} queries on {esc(main_slice)}; difference = {esc(first.name)} - {esc(second.name)};
95% CI: paired bootstrap over queries (10,000 resamples); p: {esc(test)} test; wins / ties / losses counted per query.</p>
<table id="comparison"><thead><tr><th>metric</th><th>{esc(first.name)}</th><th>{esc(second.name)}</th><th>difference</th>
<th>95% CI</th><th>p</th><th>wins / ties / losses</th></tr></thead><tbody>{rows}</tbody></table>
<figure><img src="compare-difference.png" alt="per-query difference"></figure>
<h2>Largest differences on {esc(main_metric)}</h2>
<p>Each query: {esc(first.name)}'s top {k} (left) and {esc(second.name)}'s (right); green: relevant, red: not.</p>
{figures or '<p>No query differs.</p>'}
</body></html>
""", encoding="utf-8")
    return f"{first.name} vs {second.name}"


def _paired_report(board: Mapping[str, Any], records: Mapping[str, Any], models: Sequence[str], out: Path) -> Path:
    """A caption-benchmark leaderboard: every metric across models, and recall at each cutoff
    per direction (no qrels, runs or patches to draw)."""
    figures = (("metrics.png", "every metric across models"), ("directions.png", "recall@k per direction"))
    directions = [m for m in board["metrics"] if m.startswith(("t2i_", "i2t_"))]
    with atomic_dir(out, replace=True, what="an rsretrieve report") as tmp:
        _bars(tmp / "metrics.png", board["metrics"],
              {m: [records[m]["scores"]["all"].get(metric) for metric in board["metrics"]] for m in models},
              f"all metrics ({records[models[0]].get('protocol', '')} protocol)", "score")
        _bars(tmp / "directions.png", directions,
              {m: [records[m]["scores"]["all"].get(metric) for metric in directions] for m in models},
              "text -> image (t2i) and image -> text (i2t)", "recall")
        html_text = _html(board, records, figures, None, board["main"]["metric"], board["main"]["slice"])
        (tmp / "index.html").write_text(html_text, encoding="utf-8")
    return out / "index.html"


def _html(board: Mapping[str, Any], records: Mapping[str, Any], figure_files: Sequence[tuple[str, str]],
          grids: Sequence[tuple[str, str, str]] | None, main_metric: str, main_slice: str,
          compared: str | None = None) -> str:
    """The report page; ``grids`` None: a benchmark without patches to draw (no grid section)."""
    esc = html.escape
    slices = sorted({s for row in board["rows"] for s in row["scores"]}, key=lambda s: (s != "all", s))
    head = "".join(f"<th>{esc(m)}</th>" for m in board["metrics"]) + "".join(
        f"<th>{esc(main_metric)} ({esc(s)})</th>" for s in slices if s != "all")
    body = []
    for row in board["rows"]:
        scores = row["scores"]
        cells = "".join(f"<td>{_num(scores.get('all', {}).get(m))}</td>" for m in board["metrics"])
        cells += "".join(f"<td>{_num(scores.get(s, {}).get(main_metric))}</td>" for s in slices if s != "all")
        beats = ", ".join(row["beats"]) or "-"
        ci = f"[{row['ci'][0]:.4f}, {row['ci'][1]:.4f}]" if "ci" in row else "-"
        p_next = f"{row['p_next']:.3g}" if row.get("p_next") is not None else "-"
        body.append(f"<tr><td>{row['rank']}</td><td>{esc(row['model'])}</td>{cells}<td>{esc(beats)}</td>"
                    f"<td>{ci}</td><td>{p_next}</td></tr>")
    skipped = "".join(f"<li>{esc(s['model'])}: {esc(s['reason'])}</li>" for s in board.get("skipped", []))
    figures = "".join(
        f'<figure><img src="{name}" alt="{esc(alt)}"><figcaption>{esc(alt)}</figcaption></figure>'
        for name, alt in figure_files
    )
    grid_html = "".join(
        f'<figure><img src="{name}" alt="query {esc(qid)}"><figcaption>{esc(qid)}: {esc(text)} '
        f"(top patches of {esc(board['rows'][0]['model'])}; green: relevant, red: not)</figcaption></figure>"
        for name, qid, text in grids or ()
    )
    sig = board.get("significance", {})
    tested = (f'"beats": significantly better ({esc(str(sig.get("test", "")))} test, p &lt; {esc(str(sig.get("max_p", "")))}).'
              if board.get("significance_tested", True) else "no significance test (paired benchmarks have no qrels to pair runs on).")
    papers = "".join(
        f"<tr><td>{esc(row['model'])}</td><td>{esc(e['metric'])} ({esc(e['slice'])})</td><td>{_num(e['paper'])}</td>"
        f"<td>{_num(e['ours'])}</td><td>{e['difference']:+.4f}</td><td>{esc(e['source'])}</td></tr>"
        for row in board["rows"] for e in row.get("paper", []))
    published = ("<h2>Published numbers</h2><table id=\"published\"><thead><tr><th>model</th><th>metric</th><th>paper</th>"
                 f"<th>here</th><th>difference</th><th>source</th></tr></thead><tbody>{papers}</tbody></table>") if papers else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rsretrieve report: {esc(board['suite'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}td:nth-child(2){{text-align:left}}
figure{{display:inline-block;margin:1em}}img{{max-width:100%}}</style></head>
<body data-images-loaded="0">
<h1>Leaderboard: {esc(board['suite'])}</h1>
<p>Main score: {esc(main_metric)} on {esc(main_slice)}; {tested}</p>
<table id="leaderboard"><thead><tr><th>rank</th><th>model</th>{head}<th>beats</th>
<th>95% CI ({esc(main_metric)})</th><th>p vs next</th></tr></thead>
<tbody>{''.join(body)}</tbody></table>
<p>95% CI: bootstrap over queries (resampled with replacement) of the mean {esc(main_metric)} ({esc(main_slice)}); p vs next: the test against the row below.</p>
{f'<p><a href="compare.html">Query by query: {esc(compared)}</a></p>' if compared else ''}
{published}
{f'<p>Skipped:</p><ul>{skipped}</ul>' if skipped else ''}
<h2>Metrics</h2>{figures}
{'' if grids is None else "<h2>Query grids</h2>" + (grid_html or '<p>No index folders to draw from.</p>')}
<script>
window.addEventListener("load", function () {{
  var images = Array.prototype.slice.call(document.images);
  document.body.dataset.imagesLoaded = images.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length;
  document.body.dataset.imagesTotal = images.length;
}});
</script>
</body></html>
"""


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
