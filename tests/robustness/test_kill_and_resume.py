"""Kill an indexing run midway (SIGKILL, a real process): the output stays absent, the work
folder stays valid, and the rerun resumes without duplicates or losses."""

import signal

import numpy as np

from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.index import load_index
from tests.cli.test_cli import invoke
from tests.robustness import killable


def test_sigkill_midway_then_resume(sample_root, tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "idx"
    partial = tmp_path / "idx.partial"
    process = killable.start(killable.index_args(sample_root, out))
    killable.wait_for_batches(process, partial, 3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(list(partial.glob("batch-*.npz")))
    total = len(CrisisLandMark(sample_root).plan_batches(1))
    assert 3 <= done_before < total, "the run was not killed midway"
    assert not out.exists()
    assert not list(partial.glob("*.tmp"))  # every saved batch is whole

    # The rerun and the uninterrupted reference run in this process (the kill needed a real one).
    result = invoke(*killable.index_args(sample_root, out))
    assert result.exit_code == 0, result.output
    resumed = load_index(out)
    keys = [s.key for s in CrisisLandMark(sample_root).samples]
    assert sorted(resumed.keys) == sorted(keys) and len(set(resumed.keys)) == len(keys)
    assert not partial.exists()

    fresh = tmp_path / "fresh"
    assert invoke(*killable.index_args(sample_root, fresh)).exit_code == 0
    np.testing.assert_allclose(resumed.embeddings, load_index(fresh).embeddings, atol=1e-5)
