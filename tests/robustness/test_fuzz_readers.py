"""Property tests: any malformed input to the readers is a DataError, never a crash or a hang."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.datasets.queries import load_qrels, load_queries
from rsretrieve.errors import DataError
from rsretrieve.runs import read_run

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
lines = st.one_of(
    st.text(max_size=60),
    json_values.map(lambda v: __import__("json").dumps(v)),
    st.builds(lambda q, t: __import__("json").dumps({"_id": q, "text": t}), json_values, json_values),
    st.builds(lambda *p: " ".join(map(str, p)), st.text(max_size=5), st.integers(), st.text(max_size=5), json_values),
)
documents = st.one_of(st.binary(max_size=300), st.lists(lines, max_size=6).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")))


def _write(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _valid_queries(queries: dict) -> bool:
    return bool(queries) and all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in queries.items())


def _valid_qrels(qrels: dict) -> bool:
    return all(isinstance(r, int) for docs in qrels.values() for r in docs.values())


def _valid_run(run) -> bool:  # noqa: ANN001
    import math

    return all(isinstance(s, float) and math.isfinite(s) for q in run for _, s in run.ranked(q))


@pytest.mark.parametrize(
    ("name", "reader", "valid"),
    [("queries.jsonl", load_queries, _valid_queries), ("qrels.txt", load_qrels, _valid_qrels), ("run.trec", read_run, _valid_run)],
)
@FAST
@given(content=documents)
def test_text_readers_never_crash(tmp_path, name, reader, valid, content: bytes) -> None:  # noqa: ANN001
    try:
        result = reader(_write(tmp_path, name, content))
    except DataError:
        return
    assert valid(result)


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from rsretrieve.datasets.fixtures.crisislandmark import generate_sample

    return generate_sample(tmp_path_factory.mktemp("fz") / "clm", n_samples=10, seed=5)


def _read_everything(root: Path) -> None:
    ds = CrisisLandMark(root)
    for _ in ds.iter_batches(ds.plan_batches(4)):
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_hdf5_files_give_data_errors(small_sample, tmp_path, data) -> None:  # noqa: ANN001
    root = tmp_path / "copy"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(small_sample, root)
    files = sorted(p.name for p in root.glob("*.h5"))
    target = root / data.draw(st.sampled_from(files), label="file")
    raw = bytearray(target.read_bytes())
    mode = data.draw(st.sampled_from(["flip", "truncate", "zero"]), label="mode")
    if mode == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 20), label="n")):
            at = data.draw(st.integers(0, len(raw) - 1), label="offset")
            raw[at] = 0 if mode == "zero" else raw[at] ^ 0xFF
    target.write_bytes(bytes(raw))
    try:
        _read_everything(root)
    except DataError:
        pass


def test_image_dtype_and_rank_surprises(small_sample, tmp_path) -> None:  # noqa: ANN001
    root = Path(shutil.copytree(small_sample, tmp_path / "c"))
    key = CrisisLandMark(root).samples[0].key
    from tests.conftest import replace_image

    for bad in (np.zeros((12, 120), np.float32), np.full((12, 120, 120), b"x", dtype="S1"), np.zeros((12, 120, 120, 1))):
        replace_image(root, key, bad)
        with pytest.raises(DataError, match=key):
            _read_everything(root)
