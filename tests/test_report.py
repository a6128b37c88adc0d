"""The HTML report: files, curves, and a real load in headless Chromium."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsretrieve.errors import ConfigError, DataError
from rsretrieve.report import RECALL_LEVELS, build_report, interpolated_pr

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report_dir(pair_board, tmp_path_factory):  # noqa: ANN001, ANN201
    return build_report(pair_board, tmp_path_factory.mktemp("rep") / "report", grids=2).parent


def test_interpolated_precision_recall_by_hand() -> None:
    qrels = {"q": {"a": 1, "b": 1}}
    run = {"q": {"a": 0.9, "x": 0.8, "b": 0.7}}  # P/R: (1, .5), (.5, .5), (.67, 1)
    curve = interpolated_pr(qrels, run)
    assert curve[list(RECALL_LEVELS).index(0.5)] == pytest.approx(1.0)
    assert curve[-1] == pytest.approx(2 / 3)
    assert np.all(np.diff(curve) <= 1e-12)


def test_report_files(report_dir) -> None:  # noqa: ANN001
    names = {p.name for p in report_dir.iterdir()}
    assert {"index.html", "metrics.png", "sensors.png", "labels.png", "pr.png", "grid-0.png", "grid-1.png"} <= names
    for name in names - {"index.html", "compare.html", ".rsretrieve"}:
        width, height = Image.open(report_dir / name).size
        assert width >= 300 and height >= 200
    page = (report_dir / "index.html").read_text()
    assert "<table" in page and "rsretrieve-tiny-random" in page and "http" not in page  # offline: no CDN


def test_the_comparison_page_shows_the_top_two_query_by_query(report_dir) -> None:  # noqa: ANN001
    page = (report_dir / "index.html").read_text()
    assert '<a href="compare.html">' in page and "95% CI" in page and "p vs next" in page
    compare = (report_dir / "compare.html").read_text()
    assert 'id="comparison"' in compare and "wins / ties / losses" in compare
    width, height = Image.open(report_dir / "compare-difference.png").size
    assert width >= 500 and height >= 250
    grids = sorted(report_dir.glob("0*-*-better-*.png"))
    assert grids and all(f'src="{g.name}"' in compare for g in grids)


def test_report_compare_names_two_rows(pair_board, tmp_path) -> None:  # noqa: ANN001
    from tests.cli.test_cli import assert_user_error, invoke

    results = Path(shutil.copytree(pair_board, tmp_path / "lb"))
    assert_user_error(invoke("report", results, "--compare", "random"), "--compare takes two models")
    assert_user_error(invoke("report", results, "--compare", "random,rnadom", "--out", tmp_path / "r"), "Did you mean 'random'")
    result = invoke("report", results, "--compare", "random,rsretrieve-tiny-random")
    assert result.exit_code == 0, result.output
    assert (results / "report" / "compare.html").is_file()  # beside the results, not in the working directory
    assert "random vs rsretrieve-tiny-random" in (results / "report" / "index.html").read_text()


def test_report_needs_a_leaderboard(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(DataError, match="leaderboard.json not found"):
        build_report(tmp_path, tmp_path / "out")


def test_report_loads_in_headless_chromium(report_dir, tmp_path) -> None:  # noqa: ANN001
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium; .ci/run installs it)")
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (report_dir / "index.html").as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    total = (report_dir / "index.html").read_text().count("<img ")
    assert total == 8  # four charts, two query grids and the map of each
    assert f'data-images-total="{total}"' in dom and f'data-images-loaded="{total}"' in dom  # every image decoded
    assert '<table id="leaderboard">' in dom and dom.count("<tr>") >= 3


def test_no_legend_hides_a_bar() -> None:
    """Scores of 1.0 fill the top of the plot, where matplotlib's 'best' legend would sit."""
    from rsretrieve.report import _bar_figure

    fig = _bar_figure(["ndcg@10", "map@100", "mrr"], {"model-a": [1.0, 1.0, 1.0], "model-b": [0.9, 1.0, 0.95]}, "t", "score")
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    bars = [patch.get_window_extent() for patch in ax.patches]
    assert bars and not any(legend.overlaps(bar) for bar in bars)


def test_a_caption_leaderboard_gets_its_own_report(tmp_path) -> None:  # noqa: ANN001
    import yaml

    from rsretrieve.datasets.fixtures.rs_captions import generate_rs_captions
    from rsretrieve.leaderboard import run_leaderboard
    from rsretrieve.report import build_report

    bench = generate_rs_captions(tmp_path / "bench", n_images=20, seed=0)
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "caps", "dataset": "rs-captions", "data": str(bench), "main_metric": "mean_recall",
        "metrics": ["mean_recall", "t2i_recall@1", "i2t_recall@1"], "models": ["rsretrieve-tiny-random"],
        "references": {"rsretrieve-tiny-random": [{"dataset": "rs-captions", "metric": "mean_recall", "slice": "all",
                                                   "value": 0.25, "source": "paper X"}]}}))
    run_leaderboard(suite, tmp_path / "board")
    page = build_report(tmp_path / "board", tmp_path / "report")
    assert sorted(p.name for p in (tmp_path / "report").iterdir() if not p.name.startswith(".")) == ["directions.png", "index.html", "metrics.png"]
    text = page.read_text()
    assert "paper X" in text and "no significance test" in text and "Query grids" not in text
    with pytest.raises(ConfigError, match="--compare needs per-query scores; .* is a caption-benchmark leaderboard"):
        build_report(tmp_path / "board", tmp_path / "report2", pair=["rsretrieve-tiny-random", "rsretrieve-tiny-random"])


def test_no_legend_hides_a_bar_as_chromium_draws_the_chart(tmp_path) -> None:  # noqa: ANN001
    """The same chart code drawn as SVG (bars and legend tagged), laid out by Chromium, which
    measures every bar against the legend: what a reader's browser shows, not matplotlib's own sums."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium; .ci/run installs it)")
    from rsretrieve.report import _bar_figure

    fig = _bar_figure(["ndcg@10", "map@100", "mrr", "burned area"],
                      {"model-a": [1.0, 1.0, 1.0, 1.0], "model-b": [0.9, 1.0, 0.95, 1.0], "random": [0.1, 0.2, 0.3, 1.0]}, "t", "score")
    ax = fig.axes[0]
    ax.get_legend().set_gid("legend")
    for i, patch in enumerate(ax.patches):
        patch.set_gid(f"bar-{i}")
    fig.savefig(tmp_path / "chart.svg")
    svg = (tmp_path / "chart.svg").read_text()
    svg = svg[svg.index("<svg"):]
    page = tmp_path / "page.html"
    page.write_text(f"""<!doctype html><html><body data-result="pending">{svg}<script>
var legend = document.getElementById("legend").getBoundingClientRect(), hit = [], n = 0;
document.querySelectorAll('[id^="bar-"]').forEach(function (bar) {{
  var r = bar.getBoundingClientRect(); n += 1;
  if (r.left < legend.right && legend.left < r.right && r.top < legend.bottom && legend.top < r.bottom) hit.push(bar.id);
}});
document.body.setAttribute("data-result", n + " bars; hidden: " + (hit.join(",") || "none"));
</script></body></html>""")
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert 'data-result="12 bars; hidden: none"' in dom


@pytest.mark.parametrize("text, says", [('{"rows": [{"model": "a"', "invalid JSON"), ('[1, 2]', "a JSON list where an object belongs"),
                                        ('{"rows": 3, "metrics": []}', "field 'rows' must be a list"),
                                        ('{"metrics": []}', "field 'rows' missing"), (b"\xff\xfe", "not UTF-8 text")])
def test_a_damaged_leaderboard_file_is_one_line(tmp_path, text, says) -> None:  # noqa: ANN001
    (tmp_path / "leaderboard.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataError, match=rf"leaderboard.json: .*{says}"):
        build_report(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
