"""`rsretrieve check` on damaged copies of the embedded sample: one test per flag."""

import json

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rsretrieve.datasets.check import check_dataset
from tests.cli.test_cli import invoke
from tests.conftest import first_key, replace_image


def codes(report: dict) -> dict[str, str]:
    return {p["code"]: p["level"] for p in report["problems"]}


def test_the_clean_sample_has_no_problem_and_exits_0(sample_root, tmp_path) -> None:  # noqa: ANN001
    result = invoke("check", "--data", sample_root, "--out", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] and report["problems"] == [] and report["counts"]["read"] == report["counts"]["keys"] == 40
    assert report["counts"]["splits"] == {"test": 35, "train": 5}
    assert set(report["sources"]) >= {"benv2s1", "benv2s2", "quakeset"} and "water" in report["labels"]
    vv = report["sources"]["benv2s1"]["bands"]["VV"]
    assert vv["mean"] > report["sources"]["benv2s1"]["bands"]["VH"]["mean"] and vv["std"] > 0


def test_errors_exit_1_and_are_listed_with_examples(sample_copy, tmp_path) -> None:  # noqa: ANN001
    key = first_key(sample_copy, "benv2s2")
    with h5py.File(tmp_path / "evil.h5", "w") as f:
        f.create_group(key).create_dataset("image", data=np.zeros((12, 120, 120), np.float32))
    with h5py.File(sample_copy / "crisislandmark.h5", "a") as main:
        del main[key]
        main[key] = h5py.ExternalLink("../evil.h5", key)
    result = invoke("check", "--data", sample_copy, "--out", tmp_path / "r.json")
    assert result.exit_code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    problem = next(p for p in report["problems"] if p["code"] == "outside-folder")
    assert problem["level"] == "error" and problem["examples"] == [key] and not report["ok"]
    assert "outside-folder" in result.stdout


@pytest.mark.parametrize(
    ("damage", "code", "level"),
    [
        ("missing_shard", "unresolvable", "error"),
        ("wrong_shape", "shape", "error"),
        ("integers", "dtype", "error"),
        ("duplicate", "duplicate-key", "error"),
        ("metadata_only", "missing-key", "error"),
        ("main_only", "unlisted-key", "warning"),
        ("qrels_unknown_key", "qrels-unknown-key", "error"),
        ("qrels_unknown_query", "qrels-unknown-query", "error"),
        ("swapped_s1", "s1-band-order", "warning"),
        ("s2_scale", "s2-scale", "warning"),
        ("constant_source", "constant-source", "error"),
        ("nan", "nonfinite", "warning"),
        ("blank", "blank-patch", "warning"),
        ("label", "unknown-label", "warning"),
        ("float16", "dtype", "warning"),
        ("no_coords", "no-coords", "warning"),
        ("label_attribute", "labels-mismatch", "warning"),
        ("joined_labels", "joined-labels", "warning"),
    ],
)
def test_every_flag(sample_copy, damage: str, code: str, level: str) -> None:  # noqa: ANN001
    DAMAGE[damage](sample_copy)
    report = check_dataset(sample_copy)
    assert codes(report).get(code) == level, report["problems"]
    assert report["ok"] == (level == "warning" and all(p["level"] == "warning" for p in report["problems"]))


def _keys_of(root, prefix: str) -> list[str]:  # noqa: ANN001
    with h5py.File(root / "crisislandmark.h5", "r") as main:
        return [k for k in main if k.startswith(prefix)]


def _metadata(root, change) -> None:  # noqa: ANN001
    table = pq.read_table(root / "metadata.parquet")
    pq.write_table(change(table), root / "metadata.parquet")


def _swap_s1(root) -> None:  # noqa: ANN001
    for key in _keys_of(root, "benv2s1"):
        image = check_image(root, key)
        replace_image(root, key, image[::-1].copy())


def check_image(root, key: str) -> np.ndarray:  # noqa: ANN001
    with h5py.File(root / "crisislandmark.h5", "r") as main:
        return main[key]["image"][()]


def _scale_s2(root) -> None:  # noqa: ANN001
    key = first_key(root, "cabuar")
    replace_image(root, key, check_image(root, key) * 10)


def _constant(root) -> None:  # noqa: ANN001
    for key in _keys_of(root, "quakeset"):
        replace_image(root, key, np.full((2, 120, 120), -12.0, np.float32))


def _qrels(root, line: str) -> None:  # noqa: ANN001
    path = root / "qrels" / "test.tsv"
    path.write_text(path.read_text() + line + "\n")


def _main_only(root) -> None:  # noqa: ANN001
    with h5py.File(root / "crisislandmark.h5", "a") as main:
        link = main.get(first_key(root, "cabuar"), getlink=True)
        main["cabuar_extra"] = h5py.ExternalLink(link.filename, link.path)


def _group_of(root, key: str, change) -> None:  # noqa: ANN001
    with h5py.File(root / "crisislandmark.h5", "r") as main:
        shard = main.get(key, getlink=True).filename
    with h5py.File(root / shard, "a") as f:
        change(f[key])


def _joined(table: pa.Table) -> pa.Table:
    joined = pa.array(["; ".join(labels) for labels in table.column("labels").to_pylist()])
    return table.set_column(2, "labels", joined)


DAMAGE = {
    "float16": lambda root: replace_image(root, first_key(root, "cabuar"), check_image(root, first_key(root, "cabuar")).astype(np.float16)),
    "no_coords": lambda root: _group_of(root, first_key(root, "mmflood"), lambda g: g.__delitem__("coords")),
    "label_attribute": lambda root: _group_of(root, first_key(root, "mmflood"), lambda g: g.attrs.__setitem__("labels", ["volcano"])),
    "joined_labels": lambda root: _metadata(root, _joined),
    "missing_shard": lambda root: (root / "quakeset.h5").unlink(),
    "wrong_shape": lambda root: replace_image(root, first_key(root, "mmflood"), np.zeros((2, 64, 64), np.float32)),
    "integers": lambda root: replace_image(root, first_key(root, "mmflood"), np.zeros((2, 120, 120), np.int16)),
    "duplicate": lambda root: _metadata(root, lambda t: pa.concat_tables([t, t.slice(0, 1)])),
    "metadata_only": lambda root: _metadata(root, lambda t: pa.concat_tables([t, pa.table(
        {"key": ["benv2s2_999999"], "split": ["test"], "labels": [["water"]]}, schema=t.schema)])),
    "main_only": _main_only,
    "qrels_unknown_key": lambda root: _qrels(root, "q-water\tbenv2s2_999999\t1"),
    "qrels_unknown_query": lambda root: _qrels(root, f"q-nope\t{first_key(root, 'cabuar')}\t1"),
    "swapped_s1": _swap_s1,
    "s2_scale": _scale_s2,
    "constant_source": _constant,
    "nan": lambda root: replace_image(root, first_key(root, "cabuar"), np.where(np.eye(120, dtype=bool), np.nan, 500.0).astype(np.float32)[None].repeat(12, 0)),
    "blank": lambda root: replace_image(root, first_key(root, "mmflood"), np.full((2, 120, 120), np.nan, np.float32)),
    "label": lambda root: _metadata(root, lambda t: t.set_column(2, "labels", pa.array([["volcano"]] * t.num_rows, t.schema.field("labels").type))),
}


def test_joined_label_strings_read_as_lists_everywhere(sample_copy) -> None:  # noqa: ANN001
    from rsretrieve.datasets.crisislandmark import CrisisLandMark
    from rsretrieve.datasets.labels import parse_labels

    before = {s.key: s.labels for s in CrisisLandMark(sample_copy).samples}
    _metadata(sample_copy, _joined)
    assert {s.key: s.labels for s in CrisisLandMark(sample_copy).samples} == before
    assert parse_labels("wildfire;water;shrub and scrub") == (["wildfire", "water", "shrub and scrub"], True)
    assert parse_labels("Beaches, dunes, sands, Water bodies") == (["Beaches, dunes, sands", "Water bodies"], True)
    assert parse_labels("Beaches, dunes, sands") == (["Beaches, dunes, sands"], False)
    assert parse_labels('["water", "built"]') == (["water", "built"], True)
    assert parse_labels("a town, somewhere") == (["a town, somewhere"], False)
    assert parse_labels(3) == (None, False)


def test_index_refuses_listed_keys_missing_from_the_hdf5_before_the_encoder_loads(sample_copy, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from rsretrieve.config import IndexJob
    from rsretrieve.errors import DataError
    from rsretrieve.jobs import run_index_job

    DAMAGE["metadata_only"](sample_copy)
    monkeypatch.setattr("rsretrieve.embeddings.load_encoder", lambda *a: pytest.fail("the encoder was loaded"))
    with pytest.raises(DataError, match="1 key\\(s\\) listed in metadata.parquet are not in it \\('benv2s2_999999'\\)"):
        run_index_job(IndexJob(data=str(sample_copy), model="random"), tmp_path / "idx")
    assert not (tmp_path / "idx.partial").exists() and not (tmp_path / "idx").exists()


def test_a_bad_split_is_one_error_not_a_cascade(sample_copy) -> None:  # noqa: ANN001
    """The key is still listed: its image is read and its judgements count, with no
    'missing from metadata.parquet' or 'unlisted' lines burying the one real error."""
    import pyarrow.parquet as pq_

    table = pq_.read_table(sample_copy / "metadata.parquet")
    splits = table.column("split").to_pylist()
    judged = next(i for i, s in enumerate(splits) if s == "test")
    splits[judged] = "tset"
    pq_.write_table(table.set_column(table.schema.get_field_index("split"), "split", pa.array(splits)), sample_copy / "metadata.parquet")
    report = check_dataset(sample_copy)
    assert [(p["code"], p["count"]) for p in report["problems"]] == [("bad-split", 1)]
    assert report["counts"]["read"] == 40 and report["counts"]["splits"]["invalid"] == 1


def test_the_report_goes_beside_the_dataset_not_into_the_working_folder(sample_copy, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from rsretrieve.datasets.check import check_to_file

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _, target = check_to_file(sample_copy)
    assert target == sample_copy.parent / f"{sample_copy.name}.check.json" and target.is_file()
    assert not list(elsewhere.iterdir())
