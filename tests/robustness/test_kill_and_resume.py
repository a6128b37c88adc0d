"""Kill an indexing run midway (SIGKILL, a real process): the output stays absent, the work
folder stays valid, and the rerun resumes without duplicates or losses."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.index import load_index


def _index_cmd(data: Path, out: Path) -> list[str]:
    # ViT-B-32 with random weights: slow enough on a CPU to be killed between batches.
    return [sys.executable, "-m", "rsretrieve", "index", "--data", str(data), "--out", str(out),
            "--model", "ViT-B-32", "--batch-size", "2"]


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
    total = len(CrisisLandMark(sample_root).plan_batches(2))
    assert 3 <= done_before < total, "the run was not killed midway"
    assert not out.exists()
    assert not list(partial.glob("*.tmp"))  # every saved batch is whole

    subprocess.run(_index_cmd(sample_root, out), env=env, check=True, capture_output=True)
    resumed = load_index(out)
    keys = [s.key for s in CrisisLandMark(sample_root).samples]
    assert sorted(resumed.keys) == sorted(keys) and len(set(resumed.keys)) == len(keys)
    assert not partial.exists()

    fresh = tmp_path / "fresh"
    subprocess.run(_index_cmd(sample_root, fresh), env=env, check=True, capture_output=True)
    np.testing.assert_allclose(resumed.embeddings, load_index(fresh).embeddings, atol=1e-5)
