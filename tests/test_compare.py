"""compare: two models query by query, from results files or a leaderboard folder."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rsretrieve.compare import Side, bootstrap_ci, compare_sides, load_side, p_value
from rsretrieve.errors import ConfigError, DataError
from tests.cli.test_cli import assert_user_error, invoke


def _side(name: str, scores: dict[str, float], metric: str = "ndcg@10") -> Side:
    return Side(name, Path(f"{name}.json"), {"all": {metric: scores}})


def test_wins_ties_losses_and_the_largest_differences() -> None:
    a = _side("a", {"q1": 0.9, "q2": 0.5, "q3": 0.2, "q4": 0.0, "q5": 0.7})
    b = _side("b", {"q1": 0.1, "q2": 0.5, "q3": 0.6, "q4": 0.0, "q5": 0.6})
    (d,) = compare_sides(a, b, top=2)
    assert (d.wins, d.ties, d.losses) == (2, 2, 1)
    assert d.difference == pytest.approx((0.8 + 0 - 0.4 + 0 + 0.1) / 5)
    assert [r["query"] for r in d.first_better] == ["q1", "q5"]
    assert [r["query"] for r in d.second_better] == ["q3"]
    assert d.second_better[0] == {"query": "q3", "first": 0.2, "second": 0.6, "difference": pytest.approx(-0.4)}
    assert d.ci[0] <= d.difference <= d.ci[1]


def test_bootstrap_interval_is_seeded_and_collapses_on_a_constant_difference() -> None:
    d = np.random.default_rng(3).normal(0.05, 0.2, size=200)
    assert bootstrap_ci(d) == bootstrap_ci(d)
    low, high = bootstrap_ci(d)
    # the normal approximation of the mean's 95 % interval, within bootstrap noise
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    assert low == pytest.approx(d.mean() - half, abs=0.01) and high == pytest.approx(d.mean() + half, abs=0.01)
    assert bootstrap_ci(np.full(7, 0.25)) == (0.25, 0.25)


def test_p_values_are_the_reference_tests() -> None:
    import itertools

    from scipy.stats import ttest_rel

    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)
    assert p_value(a, b, "student") == pytest.approx(ttest_rel(a, b).pvalue, rel=1e-12)
    assert p_value(a, a.copy(), "student") is None
    # the randomization test against its exact value: every one of the 2^10 swaps
    a, b = a[:10], b[:10] + 0.1
    d = a - b
    exact = np.mean([abs((np.array(s) * d).mean()) >= abs(d.mean()) - 1e-12 for s in itertools.product((-1, 1), repeat=10)])
    assert p_value(a, b, "fisher") == pytest.approx(exact, abs=0.015)  # 10,000 draws: sd 0.005
    assert p_value(a, b, "fisher") == p_value(a, b, "fisher")  # seeded, unlike ranx's
    # and on tied scores, as ranks make them: equal pairs (zero differences) and repeated values
    a = np.array([1.0, 0.5, 0.5, 0.0, 1.0, 0.25, 0.5, 0.0, 1.0, 0.5])
    b = np.array([0.5, 0.5, 0.0, 0.0, 0.5, 0.25, 1.0, 0.0, 0.5, 0.0])
    d = a - b
    exact = np.mean([abs((np.array(s) * d).mean()) >= abs(d.mean()) - 1e-12 for s in itertools.product((-1, 1), repeat=10)])
    assert p_value(a, b, "fisher") == pytest.approx(exact, abs=0.015)


def test_different_queries_and_unknown_metrics_are_refused() -> None:
    a = _side("a", {"q1": 0.9, "q2": 0.5})
    b = _side("b", {"q1": 0.1, "q3": 0.5})
    with pytest.raises(DataError, match=r"different queries .*1 only in a.json \(e.g. q2\); 1 only in b.json \(e.g. q3\)"):
        compare_sides(a, b)
    with pytest.raises(ConfigError, match="Did you mean 'ndcg@10'"):
        compare_sides(a, a, metrics=["ndcg@1O"])
    with pytest.raises(ConfigError, match="unknown significance test 'studnet'.*Did you mean 'student'"):
        compare_sides(a, a, test="studnet")


def test_a_file_without_per_query_scores_is_named(tmp_path) -> None:  # noqa: ANN001
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"model": "m", "suite": "s", "scores": {"all": {"mrr": 0.5}}}))
    with pytest.raises(DataError, match=r"old.json: this leaderboard record keeps no per-query scores.*--force"):
        load_side(old)


def test_leaderboard_rows_carry_intervals_and_p_values(pair_board) -> None:  # noqa: ANN001
    rows = json.loads((pair_board / "leaderboard.json").read_text())["rows"]
    first, second = (load_side(next((pair_board / "records" / r["model"]).glob("*.json"))) for r in rows)
    (d,) = compare_sides(first, second, metrics=["ndcg@10"], slices=["all"])
    assert rows[0]["p_next"] == pytest.approx(d.p_value, rel=1e-5) and "p_next" not in rows[1]
    scores = np.array(list(first.per_query["all"]["ndcg@10"].values()))
    assert rows[0]["ci"][0] < scores.mean() < rows[0]["ci"][1]
    assert "| 95% CI | p vs next |" in (pair_board / "leaderboard.md").read_text()


def test_compare_cli_on_a_leaderboard_folder_draws_side_by_side_grids(pair_board, tmp_path) -> None:  # noqa: ANN001
    result = invoke("compare", "--leaderboard", pair_board, "-m", "nDCG@10", "--slice", "all", "--top", "2", "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    assert "wins / ties / losses" in result.stdout and "better:" in result.stdout
    record = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    (d,) = record["comparisons"]
    assert (d["slice"], d["metric"], d["wins"] + d["ties"] + d["losses"]) == ("all", "ndcg@10", d["n_queries"])
    grids = sorted((tmp_path / "cmp").glob("*.png"))
    assert len(grids) == len(d["first_better"]) + len(d["second_better"]) > 0
    picture = np.asarray(Image.open(grids[0]))
    assert picture.shape[1] > 2 * 4 * 160  # two grids of four columns side by side
    green = (picture[..., 0] == 0) & (picture[..., 1] == 170) & (picture[..., 2] == 0)
    red = (picture[..., 0] == 210) & (picture[..., 1] == 0) & (picture[..., 2] == 0)
    assert green.any() or red.any()  # judged hits are outlined


def test_compare_cli_on_two_eval_results_searches_their_indexes(pair_board, index_dir, tmp_path) -> None:  # noqa: ANN001
    for name, folder in (("a", index_dir), ("b", pair_board / "indexes" / "random")):
        assert invoke("eval", "--index", folder, "-m", "ndcg@10", "--out", tmp_path / f"{name}.json").exit_code == 0
    result = invoke("compare", tmp_path / "a.json", tmp_path / "b.json", "--slice", "s2", "--top", "1", "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    assert "loading" in result.stderr and "encoder" in result.stderr
    assert len(list((tmp_path / "cmp").glob("*.png"))) >= 1
    assert_user_error(invoke("compare", tmp_path / "a.json"), "give two results files")
    assert_user_error(invoke("compare", tmp_path / "a.json", tmp_path / "b.json", "-k", 0), "-k must be at least 1")
    (tmp_path / "bad.json").write_text('{"per_query": ')
    assert_user_error(invoke("compare", tmp_path / "bad.json", tmp_path / "a.json"), r"bad.json: invalid JSON")
    assert_user_error(invoke("compare", "--leaderboard", pair_board, "random", "rnadom"), "Did you mean 'random'")


def test_results_of_two_datasets_are_refused() -> None:
    from dataclasses import replace

    a = replace(_side("a", {"q1": 0.5}), dataset="1" * 64)
    with pytest.raises(DataError, match="scored on different datasets"):
        compare_sides(a, replace(a, dataset="2" * 64))
