"""Kill an indexing run midway (SIGKILL, a real process): the output stays absent, the work
folder stays valid, and the rerun resumes without duplicates or losses."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from typer.testing import CliRunner

from rsretrieve.cli.app import app
from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.embeddings import build_pipeline
from rsretrieve.encoders import EncoderSpec
from rsretrieve.index import build_index, load_index


LIMIT = 12  # six batches of two: kill after three


def _index_cmd(data: Path, out: Path) -> list[str]:
    # ViT-B-32 with random weights: slow enough on a CPU to be killed between batches.
    return [sys.executable, "-m", "rsretrieve", "index", "--data", str(data), "--out", str(out),
            "--model", "ViT-B-32", "--batch-size", "2", "--limit", str(LIMIT)]


def test_sigkill_midway_then_resume(sample_root, tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "idx"
    partial = tmp_path / "idx.partial"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(_index_cmd(sample_root, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(partial.glob("batch-*.npz"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(list(partial.glob("batch-*.npz")))
    total = len(CrisisLandMark(sample_root, limit=LIMIT).plan_batches(2))
    assert 3 <= done_before < total, "the run was not killed midway"
    assert not out.exists()
    assert not list(partial.glob("*.tmp"))  # every saved batch is whole

    # The rerun and the uninterrupted reference run in this process (the kill needed a real one).
    result = CliRunner().invoke(app, [str(a) for a in _index_cmd(sample_root, out)[3:]])
    assert result.exit_code == 0, result.output
    resumed = load_index(out)
    keys = [s.key for s in CrisisLandMark(sample_root, limit=LIMIT).samples]
    assert sorted(resumed.keys) == sorted(keys) and len(set(resumed.keys)) == len(keys)
    assert not partial.exists()

    fresh = tmp_path / "fresh"
    pipeline = build_pipeline(EncoderSpec("open_clip", "ViT-B-32", None, 0))
    build_index(CrisisLandMark(sample_root, limit=LIMIT), pipeline, fresh, batch_size=2)
    np.testing.assert_allclose(resumed.embeddings, load_index(fresh).embeddings, atol=1e-5)
