"""Long steps say what they do: rich bars in a terminal, plain lines in logs and pipes."""

from rich.console import Console

from rsretrieve.cli import render
from tests.cli.test_cli import invoke


def test_plain_lines_are_throttled_and_end_with_a_summary(monkeypatch) -> None:  # noqa: ANN001
    import io

    now = [0.0]
    monkeypatch.setattr("time.monotonic", lambda: now[0])
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    with render.progress(console, "embedding") as bar:
        bar.start(100)
        for _ in range(20):  # 20 batches of 5, one every second
            now[0] += 1.0
            bar(5)
    lines = buffer.getvalue().splitlines()
    assert lines == ["embedding: 25/100 (25%), 5.0/s, 5 s", "embedding: 50/100 (50%), 5.0/s, 10 s",
                     "embedding: 75/100 (75%), 5.0/s, 15 s", "embedding: done, 100/100 (100%), 5.0/s, 20 s"]


def test_rates_count_from_the_start_of_the_work_not_from_the_model_load(monkeypatch) -> None:  # noqa: ANN001
    import io

    now = [0.0]
    monkeypatch.setattr("time.monotonic", lambda: now[0])
    buffer = io.StringIO()
    with render.progress(Console(file=buffer, force_terminal=False, width=200), "embedding") as bar:
        now[0] = 30.0  # the encoder loads
        bar.start(10)
        bar(0)  # a resumed run reports its saved batches first
        now[0] = 32.0
        bar(10)
    assert buffer.getvalue().splitlines() == ["embedding: done, 10/10 (100%), 5.0/s, 2 s"]


def test_an_error_prints_no_summary_line() -> None:
    import io

    buffer = io.StringIO()
    try:
        with render.progress(Console(file=buffer, force_terminal=False), "embedding") as bar:
            bar(3)
            raise RuntimeError("stop")
    except RuntimeError:
        pass
    assert buffer.getvalue() == ""


def test_commands_outside_a_terminal_say_what_they_do(index_dir, sample_root, tmp_path) -> None:  # noqa: ANN001
    result = invoke("index", "--data", sample_root, "--out", tmp_path / "idx", "--model", "rsretrieve-tiny", "--limit", 8)
    assert result.exit_code == 0, result.output
    assert "loading encoder open_clip:rsretrieve-tiny" in result.stderr
    assert "embedding: done, 8/8 (100%)" in result.stderr
    result = invoke("search", "--index", index_dir, "--text", "flooded area")
    assert "loading encoder" in result.stderr and "embedding 1 query and searching" in result.stderr
    result = invoke("eval", "--index", index_dir, "-m", "ndcg@10", "--out", tmp_path / "r.json")
    assert "scoring 3 slices with trec_eval" in result.stderr
