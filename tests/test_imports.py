"""Light modules stay light: scoring a saved run or fusing runs loads no model or index code."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "faiss", "open_clip", "ranx", "numba", "h5py", "transformers")


@pytest.mark.parametrize("module", ["rsretrieve.runs", "rsretrieve.fusion", "rsretrieve.metrics", "rsretrieve.evaluate", "rsretrieve.cli.app"])
def test_importing_loads_nothing_heavy(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"import {module} loaded {loaded}"


def test_eval_of_a_saved_run_loads_no_model_code(sample_root, tmp_path) -> None:  # noqa: ANN001
    run = tmp_path / "run.trec"
    run.write_text("q-water Q0 benv2s2_000000 1 0.5 x\n")
    code = (
        "import sys; from rsretrieve.cli.app import app\n"
        f"try: app([ 'eval', '--run', {str(run)!r}, '--qrels', {str(sample_root / 'qrels')!r},"
        f" '--queries', {str(sample_root / 'queries.jsonl')!r}])\n"
        "except SystemExit as e: assert e.code == 0, e.code\n"
        f"print('LOADED', ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "LOADED", out
