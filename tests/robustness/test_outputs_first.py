"""Every output place of every command is checked before any work: an output under a regular
file is one error line, and no encoder (image or text) has been loaded when it comes."""

from __future__ import annotations


import pytest

from tests.cli.test_cli import assert_user_error, invoke


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading any encoder fails the test: the refusal must come first."""
    import rsretrieve.training
    from rsretrieve.encoders import ENCODERS

    def loaded(*args: object, **kwargs: object) -> None:
        raise AssertionError("an encoder was loaded before the output was checked")

    monkeypatch.setattr(ENCODERS, "get", loaded)
    monkeypatch.setattr(rsretrieve.training, "load_text_encoder", loaded)


def test_every_output_is_checked_before_the_encoder_loads(no_model, sample_root, index_dir, tmp_path) -> None:  # noqa: ANN001
    from rsretrieve.datasets.fixtures.git10m import generate_git10m

    git = generate_git10m(tmp_path / "git", n_rows=10, shards=1, seed=0, image_size=0)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ndata: {sample_root}\nmodels: [rsretrieve-tiny-random]\nmetrics: [mrr]\nmain_metric: mrr\n")
    run = tmp_path / "r.trec"
    run.write_text("q1 Q0 d1 1 1.0 x\n")
    commands = {
        "index": ("index", "--data", sample_root, "--out", blocker / "idx"),
        "index captions": ("index", "--dataset", "git10m", "--what", "captions", "--data", git, "--out", blocker / "cap"),
        "index shards": ("index", "--data", sample_root, "--shards", 2, "--out", blocker / "idx"),
        "search": ("search", "--index", index_dir, "--text", "water", "--out", blocker / "r.trec"),
        "eval": ("eval", "--index", index_dir, "--out", blocker / "r.json"),
        "eval --save-run": ("eval", "--index", index_dir, "--save-run", blocker / "r.trec"),
        "show": ("show", "--index", index_dir, "--text", "water", "--out", blocker / "grid.png"),
        "report": ("report", tmp_path, "--out", blocker / "report"),
        "train": ("train", "--data", sample_root, "--out", blocker / "run"),
        "merge": ("merge", index_dir, "--out", blocker / "merged"),
        "bigearthnet-task": ("bigearthnet-task", "--parquet", tmp_path / "x.parquet", "--images", tmp_path, "--out", blocker / "task"),
        "leaderboard": ("leaderboard", suite, "--out", blocker / "board"),
        "leaderboard --write-expected": ("leaderboard", suite, "--out", tmp_path / "board", "--write-expected", blocker / "e.json"),
        "fuse": ("fuse", run, run, "--out", blocker / "f.json"),
        "sample": ("sample", blocker / "data"),
        "check": ("check", "--data", sample_root, "--out", blocker / "c.json"),
    }
    for name, args in commands.items():
        result = invoke(*args)
        assert "loading encoder" not in result.stderr, name
        assert_user_error(result, r"cannot write .*a-file.*(is not a folder|it is a file)")
    assert not (tmp_path / "board").exists()  # the suite did not run before its expected file was refused
