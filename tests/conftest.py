"""Shared fixtures: a tiny seeded CrisisLandMark sample and a tiny random open_clip model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Never reach for a hub from tests, and keep the default-sample cache out of $HOME.
os.environ["HF_HUB_OFFLINE"] = "1"
for name in ("COLUMNS", "LINES"):  # output as a pipe gets it, whatever terminal started the tests
    os.environ.pop(name, None)
# glibc gives every freed block above its mmap threshold (32 MB at most) back to the kernel, so
# each large activation of a forward pass is mapped and zeroed again: measured, 7 s of the 42 s
# of system time of the encoder and CLI tests. The `-n` workers and every process a test starts
# inherit these (this file is read before the workers start).
for name, value in (("MALLOC_MMAP_THRESHOLD_", "4294967296"), ("MALLOC_TRIM_THRESHOLD_", "4294967296"),
                    ("MALLOC_TOP_PAD_", "268435456")):
    os.environ.setdefault(name, value)
if os.environ.get("PYTEST_XDIST_WORKER"):  # one of `-n N` workers: one math thread each, not N x cores
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, "1")

from rsretrieve.datasets.crisislandmark import CrisisLandMark  # noqa: E402
from rsretrieve.datasets.fixtures.crisislandmark import generate_sample  # noqa: E402
from rsretrieve.embeddings import build_pipeline  # noqa: E402
from rsretrieve.encoders import EncoderSpec  # noqa: E402
from rsretrieve.index import build_index  # noqa: E402

N_SAMPLES = 40
TINY = EncoderSpec(backend="open_clip", model="rsretrieve-tiny", pretrained=None, seed=0)


@pytest.fixture(scope="session", autouse=True)
def _rsretrieve_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["RSRETRIEVE_HOME"] = str(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only sample dataset shared by the whole session (copy it before editing)."""
    return generate_sample(tmp_path_factory.mktemp("data") / "clm", n_samples=N_SAMPLES, seed=0)


@pytest.fixture
def sample_copy(sample_root: Path, tmp_path: Path) -> Path:
    """A private copy of the sample that a test may corrupt."""
    return Path(shutil.copytree(sample_root, tmp_path / "clm"))


@pytest.fixture(scope="session")
def tiny_pipeline():  # noqa: ANN201
    return build_pipeline(TINY)


@pytest.fixture(scope="session")
def index_dir(sample_root: Path, tiny_pipeline, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    out = tmp_path_factory.mktemp("index") / "idx"
    build_index(CrisisLandMark(sample_root), tiny_pipeline, out, batch_size=8)
    return out


@pytest.fixture(scope="session")
def pair_board(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only leaderboard folder of two models (the tiny one and random) on the sample:
    records with per-query scores, runs and indexes (compare, report)."""
    from rsretrieve.leaderboard import Suite, run_suite

    out = tmp_path_factory.mktemp("pair")
    run_suite(Suite(name="pair", data=str(sample_root), models=("rsretrieve-tiny-random", "random"),
                    metrics=("ndcg@10", "mrr"), main_metric="ndcg@10"), out)
    return out


def first_key(root: Path, prefix: str) -> str:
    """First sample key of ``root``'s main file starting with ``prefix`` (a source name)."""
    import h5py

    with h5py.File(root / "crisislandmark.h5", "r") as main:
        return next(k for k in main if k.startswith(prefix))


def replace_image(root: Path, key: str, image) -> None:  # noqa: ANN001
    """Overwrite one sample's ``image`` dataset in its shard (to build broken inputs)."""
    import h5py

    with h5py.File(root / "crisislandmark.h5", "r") as main:
        shard = main.get(key, getlink=True).filename
    with h5py.File(root / shard, "a") as f:
        del f[key]["image"]
        f[key].create_dataset("image", data=image)
