"""Suites, result records, caching, significance marks, tables and the reproduction check."""

import copy
import json

import pytest

from rsretrieve.errors import ConfigError
from rsretrieve.leaderboard import (
    Suite, check_against, expected_view, load_suite, render_csv, render_markdown, run_suite, significance_marks,
)
from rsretrieve.leaderboard import STAT_TESTS, Significance
from rsretrieve.zoo import Reference


@pytest.fixture(scope="module")
def board_dir(sample_root, tmp_path_factory):  # noqa: ANN001, ANN201
    paper = (Reference("crisislandmark", "ndcg@10", "s1", 0.25, "a paper"),)
    suite = Suite(name="t", data=str(sample_root), models=("rsretrieve-tiny-random", "random", "remoteclip-vit-b-32"),
                  metrics=("ndcg@10", "mrr"), main_metric="ndcg@10", references={"random": paper})
    out = tmp_path_factory.mktemp("lb")
    notes: list[tuple[str, str]] = []
    board = run_suite(suite, out, on_model=lambda m, n: notes.append((m, n)))
    return suite, out, board, notes


def test_records_and_leaderboard_files(board_dir) -> None:  # noqa: ANN001
    suite, out, board, _ = board_dir
    assert sorted(p.name for p in out.iterdir()) == ["indexes", "leaderboard.csv", "leaderboard.json", "leaderboard.md", "records", "runs"]
    record = json.loads((out / "records" / "random" / "crisislandmark.json").read_text())
    assert set(record["scores"]) == {"all", "s1", "s2"}
    assert record["revision"] and record["adapters"] == {"s2": "bundled", "s1": "bundled"}
    assert record["n_docs"]["total"] > 0 and record["n_queries"]["all"] > 0
    assert {"torch", "rsretrieve"} <= set(record["versions"]) and record["wall_time_s"] > 0
    scores = [row["scores"]["all"]["ndcg@10"] for row in board["rows"]]
    assert scores == sorted(scores, reverse=True)
    assert [s["model"] for s in board["skipped"]] == ["remoteclip-vit-b-32"]
    assert "- remoteclip-vit-b-32: not at" in (out / "leaderboard.md").read_text()
    assert (out / "leaderboard.csv").read_text().splitlines()[0].startswith("rank,model,ndcg@10@all")


def test_published_numbers_are_compared_with_the_measured_ones(board_dir) -> None:  # noqa: ANN001
    _, out, board, _ = board_dir
    row = next(r for r in board["rows"] if r["model"] == "random")
    ours = row["scores"]["s1"]["ndcg@10"]
    assert row["paper"] == [{"metric": "ndcg@10", "slice": "s1", "paper": 0.25, "ours": ours,
                             "difference": round(ours - 0.25, 6), "source": "a paper"}]
    assert f"| random | ndcg@10 (s1) | 0.2500 | {ours:.4f} | {ours - 0.25:+.4f} | a paper |" in (out / "leaderboard.md").read_text()


def test_each_encoder_is_loaded_once(sample_root, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import rsretrieve.embeddings as embeddings
    import rsretrieve.encoders as encoders
    import rsretrieve.search as search

    loads: list[str] = []

    def counted(spec, device=None):  # noqa: ANN001, ANN202
        loads.append(spec.model)
        return encoders.load_encoder(spec, device)

    for module in (embeddings, search):
        monkeypatch.setattr(module, "load_encoder", counted)
    run_suite(Suite(name="once", data=str(sample_root), models=("rsretrieve-tiny-random",), metrics=("mrr",),
                    main_metric="mrr"), tmp_path)
    assert loads == ["rsretrieve-tiny"]


def test_rerun_that_changes_nothing_recomputes_nothing(board_dir, monkeypatch) -> None:  # noqa: ANN001
    suite, out, board, _ = board_dir
    import rsretrieve.evaluate as evaluate
    import rsretrieve.embeddings as embeddings

    def boom(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("recomputed")

    monkeypatch.setattr(evaluate, "evaluate_index", boom)
    monkeypatch.setattr(embeddings.ImagePipeline, "embed", boom)
    notes: list[tuple[str, str]] = []
    again = run_suite(suite, out, on_model=lambda m, n: notes.append((m, n)))
    assert [n for _, n in notes] == ["cached", "cached", notes[2][1]] and notes[2][1].startswith("skipped")
    assert expected_view(again) == expected_view(board)


@pytest.mark.parametrize("test", STAT_TESTS)
def test_significance_marks_find_the_clear_winner(test: str) -> None:
    qrels = {f"q{i}": {f"d{i}": 1} for i in range(20)}
    docs = [f"d{i}" for i in range(20)]
    perfect = {q: {d: (1.0 if d == f"d{q[1:]}" else 0.0) for d in docs} for q in qrels}
    reversed_ = {q: {d: (0.0 if d == f"d{q[1:]}" else 1.0 - int(d[1:]) / 100) for d in docs} for q in qrels}
    marks = significance_marks(qrels, {"good": perfect, "bad": reversed_}, set(docs), "ndcg@10", Significance(test))
    assert marks == {"good": ["bad"], "bad": []}


def _board() -> dict:
    return {
        "suite": "s", "main": {"slice": "all", "metric": "ndcg@10"}, "metrics": ["ndcg@10", "mrr"],
        "significance": {"test": "student", "max_p": 0.05}, "tolerance": 0.01, "skipped": [],
        "rows": [
            {"rank": 1, "model": "m1", "scores": {"all": {"ndcg@10": 0.9, "mrr": 1.0}, "s1": {"ndcg@10": 0.8, "mrr": None}}, "beats": ["m2"]},
            {"rank": 2, "model": "m2", "scores": {"all": {"ndcg@10": 0.5, "mrr": 0.6}, "s1": {"ndcg@10": 0.4, "mrr": 0.5}}, "beats": []},
        ],
    }


def test_markdown_and_csv_tables() -> None:
    md = render_markdown(_board())
    assert "| 1 | m1 (a) | 0.9000<sup>b</sup> | 1.0000 | 0.8000 |" in md
    assert "| 2 | m2 (b) | 0.5000 | 0.6000 | 0.4000 |" in md
    rows = render_csv(_board()).splitlines()
    assert rows[0] == "rank,model,ndcg@10@all,mrr@all,ndcg@10@s1,mrr@s1,beats"
    assert rows[1] == "1,m1,0.9000,1.0000,0.8000,-,m2"


def test_check_passes_within_tolerance_and_fails_on_drift_or_reordering() -> None:
    board = _board()
    expected = expected_view(board)
    assert check_against(board, expected) == []
    near = copy.deepcopy(expected)
    near["rows"][0]["scores"]["all"]["ndcg@10"] += 0.009
    assert check_against(board, near) == []
    drifted = copy.deepcopy(expected)
    drifted["rows"][1]["scores"]["s1"]["mrr"] = 0.52
    assert check_against(board, drifted) == ["m2 mrr (s1): expected 0.5200, got 0.5000 (tolerance 0.01)"]
    swapped = copy.deepcopy(expected)
    swapped["rows"].reverse()
    assert check_against(board, swapped)[0] == "ranking changed: expected m2 > m1, got m1 > m2"


def test_suite_files_are_validated(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmodels: [random]\nmetrics: [ndcg@10]\nmain_metric: mrr\n")
    with pytest.raises(ConfigError, match="main_metric 'mrr' is not in metrics"):
        load_suite(path)
    path.write_text("name: s\nmodels: [random]\nmodel: x\n")
    with pytest.raises(ConfigError, match="unknown key 'model'. Did you mean 'models'"):
        load_suite(path)
    path.write_text("name: s\nmodels: [random]\nmodel: x\nmetrix: [mrr]\n")
    with pytest.raises(ConfigError, match="unknown keys 'model' \\(did you mean 'models'\\?\\), 'metrix' \\(did you mean 'metrics'\\?\\)"):
        load_suite(path)
    path.write_text("name: s\nmodels: [random]\nsignificance: {test: wilcoxon}\n")
    with pytest.raises(ConfigError, match="significance test must be one of"):
        load_suite(path)


def test_a_suite_is_refused_whole_before_any_model_runs(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """A main slice it does not score (a KeyError after every model had run) and a model listed
    twice (garbled significance letters) are refused when the suite is read."""
    import rsretrieve.leaderboard as leaderboard

    monkeypatch.setattr(leaderboard, "run_suite", lambda *a, **k: pytest.fail("a model ran"))
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmodels: [random]\nmetrics: [mrr]\nmain_metric: mrr\nmain_slice: s3\n")
    with pytest.raises(ConfigError, match=r"main_slice 's3' is not a slice this suite scores \(one of all, s2, s1\)\.$"):
        leaderboard.run_leaderboard(path, tmp_path / "o")
    path.write_text("name: s\nmodels: [random]\nsensors: s2\nmetrics: [mrr]\nmain_metric: mrr\nmain_slice: s1\n")
    with pytest.raises(ConfigError, match=r"main_slice 's1' is not a slice this suite scores \(one of all, s2\)"):
        leaderboard.run_leaderboard(path, tmp_path / "o")
    path.write_text("name: s\nmodels: [random, rsretrieve-tiny-random, random]\nmetrics: [mrr]\nmain_metric: mrr\n")
    with pytest.raises(ConfigError, match="model 'random' is listed more than once"):
        leaderboard.run_leaderboard(path, tmp_path / "o")


def test_shipped_suites_are_valid() -> None:
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "configs" / "benchmarks").glob("*.yaml")):
        load_suite(path)


def _caption_suite(tmp_path, bench, **extra) -> object:  # noqa: ANN001
    import yaml

    data = {"name": "captions", "dataset": "rs-captions", "data": str(bench), "protocol": "remoteclip",
            "metrics": ["mean_recall", "t2i_recall@1", "i2t_recall@1"], "main_metric": "mean_recall",
            "models": ["rsretrieve-tiny-random", "remoteclip-vit-b-32"],
            "references": {"rsretrieve-tiny-random": [
                {"dataset": "rs-captions", "metric": "mean_recall", "slice": "all", "value": 0.5, "source": "a test paper"}]},
            **extra}
    path = tmp_path / "captions.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_caption_suite_scores_models_and_prints_the_difference_to_the_paper(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from rsretrieve.datasets.fixtures.rs_captions import generate_rs_captions
    from rsretrieve.leaderboard import run_leaderboard
    from rsretrieve.paired import caption_report
    from rsretrieve.zoo import get_card

    bench = generate_rs_captions(tmp_path / "bench", n_images=30, seed=0)
    result = run_leaderboard(_caption_suite(tmp_path, bench), tmp_path / "out")
    (row,) = result.board["rows"]
    direct, _ = caption_report(bench, get_card("rsretrieve-tiny-random").spec(), "remoteclip")
    assert row["scores"]["all"]["mean_recall"] == direct["results"]["all"]["scores"]["mean_recall"]
    assert row["paper"][0]["difference"] == pytest.approx(direct["results"]["all"]["scores"]["mean_recall"] - 0.5, abs=1e-6)
    assert [s["model"] for s in result.board["skipped"]] == ["remoteclip-vit-b-32"]
    markdown = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "a test paper" in markdown and "Superscripts" not in markdown
    monkeypatch.setattr("rsretrieve.paired.caption_report", lambda *a, **k: pytest.fail("recomputed"))
    again = run_leaderboard(_caption_suite(tmp_path, bench), tmp_path / "out")
    assert again.board["rows"][0]["scores"] == row["scores"]


def test_caption_suites_are_validated_before_any_work(tmp_path) -> None:  # noqa: ANN001
    from rsretrieve.datasets.fixtures.rs_captions import generate_rs_captions
    from rsretrieve.leaderboard import run_leaderboard

    bench = generate_rs_captions(tmp_path / "bench", n_images=15, seed=0)
    with pytest.raises(ConfigError, match="metric 'ndcg@10' is not a caption-benchmark metric"):
        load_suite(_caption_suite(tmp_path, bench, metrics=["ndcg@10"], main_metric="ndcg@10"))
    with pytest.raises(ConfigError, match="Did you mean 'skyscript'"):
        load_suite(_caption_suite(tmp_path, bench, protocol="skyscrpt"))
    with pytest.raises(ConfigError, match="'random' is not one"):
        run_leaderboard(_caption_suite(tmp_path, bench, models=["rsretrieve-tiny-random", "random"], references={}), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_suite_entries_carry_index_options(sample_root, tmp_path) -> None:  # noqa: ANN001
    """A row may be a card with index options (sensors, bands, adapters); each is its own row,
    index and record, and options without a row name, unknown keys or odd names are refused."""
    import json as json_

    from rsretrieve.leaderboard import load_suite, run_suite

    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(f"""name: s
data: {sample_root}
sensors: s2
limit: 30
metrics: [ndcg@10, mrr]
main_metric: ndcg@10
main_slice: s2
baseline: rsretrieve-tiny-random
models:
  - rsretrieve-tiny-random
  - {{name: tiny-rgbn, model: rsretrieve-tiny-random, s2_adapter: "patch-embed:init=mean", bands: [B02, B03, B04, B08]}}
""")
    board = run_suite(load_suite(suite_file), tmp_path / "board")
    rows = {row["model"]: row for row in board["rows"]}
    assert set(rows) == {"rsretrieve-tiny-random", "tiny-rgbn"}
    manifest = json_.loads((tmp_path / "board" / "indexes" / "tiny-rgbn" / "manifest.json").read_text())
    assert manifest["bands"]["s2"]["kept"] == ["B02", "B03", "B04", "B08"] and manifest["adapters"]["s2"] == "patch-embed:init=mean"
    record = json_.loads((tmp_path / "board" / "records" / "tiny-rgbn" / "crisislandmark.json").read_text())
    assert record["card"] == "rsretrieve-tiny-random" and record["options"]["bands"] == "B02,B03,B04,B08"
    versus = rows["tiny-rgbn"]["vs_baseline"]
    assert versus["model"] == "rsretrieve-tiny-random" and 0 <= versus["p"] <= 1 and "vs_baseline" not in rows["rsretrieve-tiny-random"]
    assert "vs rsretrieve-tiny-random: difference, p" in (tmp_path / "board" / "leaderboard.md").read_text()
    from rsretrieve.report import build_report

    page = build_report(tmp_path / "board", tmp_path / "report", grids=0).read_text()
    assert (tmp_path / "report" / "baseline.png").is_file() and "significance against rsretrieve-tiny-random" in page
    for bad, says in (("{model: random, bands: [B02]}", "has index options, so it needs a name"),
                      ("{name: x, model: random, colour: red}", "unknown"),
                      ("{name: 'a b', model: random, sensors: s2}", "must be letters, digits")):
        suite_file.write_text(f"name: s\nmetrics: [mrr]\nmain_metric: mrr\nmodels: [{bad}]\n")
        with pytest.raises(ConfigError, match=says):
            load_suite(suite_file)
    suite_file.write_text("name: s\nmetrics: [mrr]\nmain_metric: mrr\nbaseline: rand\nmodels: [random]\n")
    with pytest.raises(ConfigError, match="baseline 'rand' is not a row of the suite. Did you mean 'random'"):
        load_suite(suite_file)


def test_a_suite_with_skipped_models_is_not_a_success(sample_root, tmp_path) -> None:  # noqa: ANN001
    """A paper reproduction whose paper models were skipped exits 1 with one line naming them;
    --allow-missing accepts the partial table, which says which rows are missing."""
    from tests.cli.test_cli import invoke

    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nlimit: 20\nmetrics: [mrr]\nmain_metric: mrr\nmodels: [closp-rn, random]\n")
    failed = invoke("leaderboard", suite, "--data", sample_root, "--out", tmp_path / "b")
    assert failed.exit_code == 1 and "error: incomplete: 1 of 2 models skipped (missing weights: closp-rn)" in failed.stderr
    accepted = invoke("leaderboard", suite, "--data", sample_root, "--out", tmp_path / "b", "--allow-missing")
    assert accepted.exit_code == 0 and "note: incomplete: 1 of 2 models skipped" in accepted.stderr
    assert "**Incomplete: 1 of 2 models skipped; their rows are missing:**" in (tmp_path / "b" / "leaderboard.md").read_text()
    needs = invoke("models", "--missing", "--suite", suite)
    assert needs.exit_code == 0 and "closp-rn" in needs.stdout and "random" not in needs.stdout.split("cards;")[0]
    nowhere = invoke("leaderboard", suite, "--data", tmp_path / "absent", "--out", tmp_path / "c")
    assert nowhere.exit_code == 2 and "dataset folder" in nowhere.stderr and "hf download DarthReca/crisislandmark" in nowhere.stderr
