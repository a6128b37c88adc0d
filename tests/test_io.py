import pytest

from rsretrieve.io import atomic_dir, atomic_path, write_json, write_text


def test_atomic_write_replaces_only_on_success(tmp_path) -> None:  # noqa: ANN001
    target = tmp_path / "a.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    write_json(target, {"x": 1})
    assert target.read_text().strip().startswith("{")


def test_atomic_dir_leaves_nothing_on_failure(tmp_path) -> None:  # noqa: ANN001
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(target, what="a test output") as tmp:
            (tmp / "f").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target, what="a test output") as tmp:
        (tmp / "f").write_text("1")
    with atomic_dir(target, replace=True, what="a test output") as tmp:
        (tmp / "f").write_text("2")
    assert (target / "f").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_outputs_follow_the_umask(tmp_path) -> None:  # noqa: ANN001
    import os

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "f.txt", "x")
        with atomic_dir(tmp_path / "d", what="a test output") as tmp:
            (tmp / "g").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
