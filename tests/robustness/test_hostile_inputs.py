"""Hostile and damaged inputs, through the CLI: nothing is read from outside the dataset folder,
nothing stale is reused, nothing rsretrieve did not make is deleted, and every problem is one
`error:` line (exit 2), never a traceback or a half-written output."""

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.cli.test_cli import assert_user_error, invoke
from tests.conftest import first_key, replace_image

TINY = ("--model", "rsretrieve-tiny", "--batch-size", "8")


def _index(data: Path, out: Path, *extra: object):  # noqa: ANN202
    return invoke("index", "--data", data, "--out", out, *TINY, *extra)


def _evil_file(folder: Path, key: str) -> Path:
    outside = folder / "evil.h5"
    with h5py.File(outside, "w") as f:
        f.create_group(key).create_dataset("image", data=np.full((12, 120, 120), 7.0, np.float32))
    return outside


# 1. Every hop of every link chain stays inside the dataset folder --------------------------

def test_soft_link_to_an_external_link_elsewhere_in_the_main_file_is_refused(sample_copy, tmp_path) -> None:  # noqa: ANN001
    key = first_key(sample_copy, "benv2s2")
    _evil_file(tmp_path, key)
    with h5py.File(sample_copy / "crisislandmark.h5", "a") as main:
        main["hidden/escape"] = h5py.ExternalLink(str(tmp_path / "evil.h5"), key)
        del main[key]
        main[key] = h5py.SoftLink("/hidden/escape")
    assert_user_error(_index(sample_copy, tmp_path / "idx"), rf"key '{key}' links outside the dataset folder to '.*evil.h5'")
    assert not (tmp_path / "idx").exists()


def test_external_link_inside_a_shard_is_refused(sample_copy, tmp_path) -> None:  # noqa: ANN001
    key = first_key(sample_copy, "benv2s2")
    _evil_file(tmp_path, key)
    with h5py.File(sample_copy / "crisislandmark.h5", "r") as main:
        shard = main.get(key, getlink=True).filename
    with h5py.File(sample_copy / shard, "a") as f:
        del f[key]["image"]
        f[key]["image"] = h5py.ExternalLink("../evil.h5", f"/{key}/image")
    assert_user_error(_index(sample_copy, tmp_path / "idx"), rf"{shard}: key '{key}' links outside the dataset folder to '../evil.h5'")


def test_links_that_stay_inside_the_folder_still_work(sample_copy, tmp_path) -> None:  # noqa: ANN001
    key = first_key(sample_copy, "benv2s2")
    with h5py.File(sample_copy / "crisislandmark.h5", "a") as main:
        target = main.get(key, getlink=True)
        main["aliases/a"] = h5py.ExternalLink(target.filename, target.path)
        del main[key]
        main[key] = h5py.SoftLink("/aliases/a")
    assert _index(sample_copy, tmp_path / "idx").exit_code == 0


# 2. A changed dataset is never reused -------------------------------------------------------

def _swap_two_images(root: Path) -> None:
    """Swap the images of two samples of one shard: same file size, other content."""
    with h5py.File(root / "crisislandmark.h5", "r") as main:
        links = [(k, main.get(k, getlink=True)) for k in main if k.startswith("benv2s2")]
    shard = links[0][1].filename
    a, b = [k for k, link in links if link.filename == shard][:2]
    with h5py.File(root / shard, "r+") as f:
        first, second = f[a]["image"][()], f[b]["image"][()]
        f[a]["image"][...] = second
        f[b]["image"][...] = first


def test_swapped_images_are_not_reused_and_verify_sees_content(sample_copy, tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "idx"
    assert _index(sample_copy, out, "--verify").exit_code == 0
    result = _index(sample_copy, out, "--verify")
    assert result.exit_code == 0 and "reused as it is" in result.stdout
    sizes = {p.name: p.stat().st_size for p in sample_copy.glob("*.h5")}
    _swap_two_images(sample_copy)
    assert {p.name: p.stat().st_size for p in sample_copy.glob("*.h5")} == sizes
    assert_user_error(_index(sample_copy, out), r"was built differently \(the dataset changed: a shard's size or modification time")
    # a tool that restores modification times: only --verify can tell
    for shard in sample_copy.glob("*.h5"):
        os.utime(shard, ns=(shard.stat().st_atime_ns, (out / "manifest.json").stat().st_mtime_ns))
    stamps = {p.name: p.stat().st_mtime_ns for p in sample_copy.glob("*.h5")}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"]["content_sha256"]
    result = _index(sample_copy, out, "--verify")
    assert {p.name: p.stat().st_mtime_ns for p in sample_copy.glob("*.h5")} == stamps
    assert_user_error(result, r"shard contents \(--verify\)|the dataset changed")
    assert _index(sample_copy, out, "--force").exit_code == 0


def test_a_partial_build_of_changed_shards_starts_over(sample_copy, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import rsretrieve.embeddings as embeddings

    out = tmp_path / "idx"
    original, seen = embeddings.ImagePipeline.embed, []

    def failing(self, batch):  # noqa: ANN001, ANN202
        if len(seen) == 2:
            raise KeyboardInterrupt
        seen.append(batch.keys)
        return original(self, batch)

    monkeypatch.setattr(embeddings.ImagePipeline, "embed", failing)
    assert _index(sample_copy, out).exit_code == 130
    monkeypatch.setattr(embeddings.ImagePipeline, "embed", original)
    assert len(list((tmp_path / "idx.partial").glob("batch-*.npz"))) == 2
    _swap_two_images(sample_copy)
    result = _index(sample_copy, out)
    assert result.exit_code == 0, result.output
    assert "holds a partial build of another plan" in " ".join(result.stderr.split())


# 3. --force replaces only what rsretrieve made ----------------------------------------------

def test_force_never_deletes_a_folder_or_file_rsretrieve_did_not_make(sample_root, tmp_path) -> None:  # noqa: ANN001
    mywork = tmp_path / "mywork"
    mywork.mkdir()
    (mywork / "notes.txt").write_text("notes")
    assert_user_error(_index(sample_root, mywork, "--force"), r"refusing to replace .*mywork: it is a folder rsretrieve did not make")
    assert (mywork / "notes.txt").read_text() == "notes"
    plain = tmp_path / "plain.txt"
    plain.write_text("keep")
    assert_user_error(_index(sample_root, plain, "--force"), r"plain.txt: it is a file, and this output is a folder")
    assert plain.read_text() == "keep" and not (tmp_path / ".plain.txt.old").exists()
    copy = Path(shutil.copytree(sample_root, tmp_path / "data"))
    assert_user_error(_index(copy, copy, "--force"), r"refusing to replace .*data: it is something else rsretrieve made, not an rsretrieve index")
    (copy / ".rsretrieve").unlink()  # now like a downloaded release
    assert_user_error(_index(copy, copy, "--force"), r"refusing to replace .*data: it is a folder rsretrieve did not make")
    assert (copy / "crisislandmark.h5").is_file()
    assert_user_error(invoke("sample", copy, "--force"), r"refusing to replace .*data: it is a folder rsretrieve did not make")
    assert (copy / "crisislandmark.h5").is_file()
    partial = tmp_path / "other.partial"
    partial.mkdir()
    (partial / "mine.txt").write_text("mine")
    assert_user_error(_index(sample_root, tmp_path / "other"), r"other.partial exists and is not a partial build of rsretrieve")
    assert (partial / "mine.txt").is_file()


def test_force_replaces_an_index_it_made(sample_root, tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "idx"
    assert _index(sample_root, out).exit_code == 0
    result = _index(sample_root, out, "--force", "--limit", "6")
    assert result.exit_code == 0 and json.loads((out / "manifest.json").read_text())["counts"]["total"] == 6


# 4. Damaged index files and unusable outputs: one error line, before any work ---------------

@pytest.fixture
def built(sample_root, tmp_path) -> Path:  # noqa: ANN001
    out = tmp_path / "idx"
    assert _index(sample_root, out).exit_code == 0
    return out


@pytest.mark.parametrize("name", ["embeddings.npy", "index.faiss", "ids.parquet"])
def test_truncated_index_files_are_named_with_the_way_out(built, name: str) -> None:  # noqa: ANN001
    path = built / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    assert_user_error(invoke("search", "--index", built, "--text", "water"), rf"{name} is damaged .*rebuild the index with .*--force")


def test_bad_manifests_are_named(built) -> None:  # noqa: ANN001
    manifest = json.loads((built / "manifest.json").read_text())
    (built / "manifest.json").write_text("{not json")
    assert_user_error(invoke("search", "--index", built, "--text", "water"), r"manifest.json: invalid JSON")
    manifest["embed_dim"] = 7
    (built / "manifest.json").write_text(json.dumps(manifest))
    assert_user_error(invoke("search", "--index", built, "--text", "water"), r"vector widths disagree \(manifest 7, embeddings 64, faiss 64\)")


def test_unusable_outputs_fail_before_any_work(built, sample_root, tmp_path) -> None:  # noqa: ANN001
    queries = sample_root / "queries.jsonl"
    (tmp_path / "a-file").write_text("x")
    assert_user_error(_index(sample_root, tmp_path / "a-file" / "idx"), r"cannot write .*a-file/idx: .*a-file is not a folder")
    assert_user_error(invoke("search", "--index", built, "--queries", queries, "--out", tmp_path), r"it is a folder; give a file name")
    assert_user_error(invoke("eval", "--index", built, "--out", tmp_path), r"it is a folder; give a file name")
    assert_user_error(invoke("sample", tmp_path / "a-file"), r"cannot write .*a-file: it is a file")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        assert_user_error(invoke("eval", "--index", built, "--out", locked / "r.json"), r"is not writable")


# 5. A damaged batch file is discarded and embedded again --------------------------------------

def test_damaged_partial_batch_is_discarded_with_a_warning(sample_root, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import rsretrieve.embeddings as embeddings

    out = tmp_path / "idx"
    original, seen = embeddings.ImagePipeline.embed, []

    def failing(self, batch):  # noqa: ANN001, ANN202
        if len(seen) == 3:
            raise KeyboardInterrupt
        seen.append(1)
        return original(self, batch)

    monkeypatch.setattr(embeddings.ImagePipeline, "embed", failing)
    assert _index(sample_root, out).exit_code == 130
    monkeypatch.setattr(embeddings.ImagePipeline, "embed", original)
    batch = tmp_path / "idx.partial" / "batch-000001.npz"
    batch.write_bytes(batch.read_bytes()[:100])
    for extra in ((), ("--force",)):
        result = _index(sample_root, out, *extra)
        assert result.exit_code == 0, result.output
        if not extra:
            assert "batch-000001.npz is damaged or stale; discarded" in " ".join(result.stderr.split())
    fresh = tmp_path / "fresh"
    assert _index(sample_root, fresh).exit_code == 0
    np.testing.assert_allclose(np.load(out / "embeddings.npy"), np.load(fresh / "embeddings.npy"), atol=1e-6)


# 6. Leftovers of a killed final write are cleaned on the next run ----------------------------

def test_leftover_temporary_folders_are_removed(sample_root, tmp_path) -> None:  # noqa: ANN001
    stale = tmp_path / ".idx.abcd1234.tmp"
    stale.mkdir()
    (stale / "embeddings.npy").write_bytes(b"half")
    keep = tmp_path / ".idx.notours.tmp"
    keep.mkdir()
    assert _index(sample_root, tmp_path / "idx").exit_code == 0
    assert not stale.exists() and keep.exists()


# 7. Duplicate keys, integer images, NaN reports --------------------------------------------

def test_duplicate_metadata_keys_are_refused(sample_copy, tmp_path) -> None:  # noqa: ANN001
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(sample_copy / "metadata.parquet")
    pq.write_table(pa.concat_tables([table, table.slice(3, 1)]), sample_copy / "metadata.parquet")
    key = table.column("key")[3].as_py()
    assert_user_error(_index(sample_copy, tmp_path / "idx"), rf"metadata.parquet: key '{key}' appears twice \(rows 3 and 40\)")


def test_integer_images_are_refused(sample_copy, tmp_path) -> None:  # noqa: ANN001
    key = first_key(sample_copy, "benv2s1")
    replace_image(sample_copy, key, np.zeros((2, 120, 120), np.int16))
    assert_user_error(_index(sample_copy, tmp_path / "idx"), rf"key '{key}': image dtype int16 \(integers\); CrisisLandMark images are float32")


def test_complex_images_are_refused_by_index_as_check_calls_them_an_error(sample_copy, tmp_path) -> None:  # noqa: ANN001
    """Reading complex64 as float32 drops the imaginary part: index and check agree it is an error."""
    key = first_key(sample_copy, "benv2s2")
    replace_image(sample_copy, key, np.ones((12, 120, 120), np.complex64) * (1 + 2j))
    assert_user_error(_index(sample_copy, tmp_path / "idx"), rf"key '{key}': image dtype complex64 \(complex\); .*imaginary part")
    report = tmp_path / "c.json"
    assert invoke("check", "--data", sample_copy, "--out", report).exit_code != 0
    problems = json.loads(report.read_text())["problems"]
    assert any(p["code"] == "dtype" and p["level"] == "error" and key in p["examples"] for p in problems)


def test_nan_summary_names_the_worst_and_the_all_nan_keys(sample_copy, tmp_path) -> None:  # noqa: ANN001
    blank, spotty = first_key(sample_copy, "benv2s1"), first_key(sample_copy, "cabuar")
    replace_image(sample_copy, blank, np.full((2, 120, 120), np.nan, np.float32))
    image = np.ones((12, 120, 120), np.float32)
    image[0, :3] = np.nan
    replace_image(sample_copy, spotty, image)
    result = _index(sample_copy, tmp_path / "idx")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stderr.split())
    assert f"{blank} (28800), {spotty} (360)" in text and f"key '{blank}' has no finite pixel" in text
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["nonfinite_keys"] == {blank: 28800, spotty: 360} and manifest["all_nonfinite_keys"] == [blank]
