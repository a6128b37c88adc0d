"""ranx's kernels compile on first need, once, with a message; not at install."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsretrieve import kernels
from rsretrieve.errors import ModelError


@pytest.fixture
def fresh(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setattr(kernels, "_checked", False)
    monkeypatch.delenv(kernels.CHILD, raising=False)
    stamp = tmp_path / "cache" / ".stamp"
    monkeypatch.setattr(kernels, "stamp_path", lambda: stamp)
    return stamp


def test_first_need_compiles_once_and_says_so(fresh, tmp_path, monkeypatch, capfd) -> None:  # noqa: ANN001
    marker = tmp_path / "ran"
    monkeypatch.setattr(kernels, "COMPILE", f"import os, pathlib; assert os.environ['{kernels.CHILD}']; "
                                            f"pathlib.Path({str(marker)!r}).write_text('x')")
    kernels.ensure_ranx()
    err = capfd.readouterr().err
    assert "compiling ranx's numba kernels, first use after install" in err and "ranx compiled in" in err
    assert marker.is_file() and fresh.is_file()
    marker.unlink()
    monkeypatch.setattr(kernels, "_checked", False)
    kernels.ensure_ranx()  # stamped: nothing runs, nothing is said
    assert not marker.exists() and capfd.readouterr().err == ""


def test_a_failed_compile_is_one_error(fresh, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(kernels, "COMPILE", "raise SystemExit('numba: no LLVM')")
    with pytest.raises(ModelError, match="compiling ranx's kernels failed: numba: no LLVM"):
        kernels.ensure_ranx()
    assert not fresh.exists()


def test_the_install_compiles_only_in_the_background() -> None:
    bootstrap = (Path(__file__).resolve().parents[1] / "scripts" / "bootstrap.sh").read_text()
    assert "compile_ranx" not in bootstrap
    background = [line for line in bootstrap.splitlines() if "rsretrieve.kernels" in line]
    assert background and all(line.lstrip().startswith("nohup nice") for line in background)


def test_a_run_waits_for_the_background_compile_instead_of_compiling(fresh, tmp_path, monkeypatch, capfd) -> None:  # noqa: ANN001
    import fcntl
    import threading
    import time

    marker = tmp_path / "ran"
    monkeypatch.setattr(kernels, "COMPILE", f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')")
    fresh.parent.mkdir(parents=True)
    holder = open(fresh.with_name(fresh.name + ".lock"), "a")  # noqa: SIM115 - held across the thread
    fcntl.flock(holder, fcntl.LOCK_EX)

    def finish() -> None:  # the background compiler: done after a moment
        time.sleep(0.5)
        fresh.write_text("compiled in 1 s\n")
        fcntl.flock(holder, fcntl.LOCK_UN)
        holder.close()

    thread = threading.Thread(target=finish)
    thread.start()
    kernels.ensure_ranx()
    thread.join()
    assert "waiting for ranx's numba kernels" in capfd.readouterr().err and not marker.exists()


def test_the_stamp_lives_beside_ranx_cache() -> None:
    assert kernels.stamp_path().name.startswith(".rsretrieve-compiled-")
