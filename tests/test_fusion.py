"""Fusion against hand-computed values."""

import pytest

from rsretrieve.errors import ConfigError
from rsretrieve.fusion import fuse_runs

A = {"q": {"x": 3.0, "y": 2.0, "z": 1.0}}
B = {"q": {"y": 0.9, "x": 0.1}}


def test_rrf_sums_reciprocal_ranks_with_k_60() -> None:
    fused = fuse_runs([A, B], "rrf").to_dict()["q"]
    assert fused["x"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["y"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["z"] == pytest.approx(1 / 63)


def test_combsum_and_combmnz_on_min_max_scores() -> None:
    # min-max: A -> x 1, y .5, z 0; B -> y 1, x 0
    assert fuse_runs([A, B], "combsum").to_dict()["q"] == pytest.approx({"x": 1.0, "y": 1.5, "z": 0.0})
    assert fuse_runs([A, B], "combmnz").to_dict()["q"] == pytest.approx({"x": 2.0, "y": 3.0, "z": 0.0})
    assert fuse_runs([A, B], "max").to_dict()["q"] == pytest.approx({"x": 1.0, "y": 1.0, "z": 0.0})


def test_queries_in_one_run_only_are_kept() -> None:
    fused = fuse_runs([A, {"r": {"x": 1.0}}], "rrf").to_dict()
    assert set(fused) == {"q", "r"} and fused["r"]["x"] == pytest.approx(1 / 61)


def test_rank_based_fusion_ranks_ties_by_the_rule() -> None:
    # "b" and "a" tie in the first run: the rule ranks "b" first (document id descending)
    fused = fuse_runs([{"q": {"a": 1.0, "b": 1.0}}, {"q": {"c": 1.0}}], "rrf").to_dict()["q"]
    assert fused["b"] == pytest.approx(1 / 61) and fused["a"] == pytest.approx(1 / 62)


def test_bad_fusion_options() -> None:
    with pytest.raises(ConfigError, match="unknown fusion method 'rfr'. Did you mean 'rrf'"):
        fuse_runs([A, B], "rfr")
    with pytest.raises(ConfigError, match="unknown score normalisation 'minmax'. Did you mean 'min-max'"):
        fuse_runs([A, B], "combsum", "minmax")
    with pytest.raises(ConfigError, match="at least two runs"):
        fuse_runs([A], "rrf")


def test_metrics_without_qrels_are_refused(tmp_path) -> None:  # noqa: ANN001
    from rsretrieve.errors import ConfigError
    from rsretrieve.fusion import fuse_files

    with pytest.raises(ConfigError, match="--metrics scores the fused run: give --qrels and --queries too"):
        fuse_files([tmp_path / "a.trec", tmp_path / "b.trec"], tmp_path / "f.json", metrics=["ndcg@10"])
