"""Index folders: contents, manifest, reuse, resume after an interruption, ANN kinds."""

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from rsretrieve.datasets.crisislandmark import CrisisLandMark
from rsretrieve.errors import DataError
from rsretrieve.index import IndexSettings, build_index, load_index


def test_index_folder_contents(index_dir, sample_root) -> None:  # noqa: ANN001
    assert sorted(p.name for p in index_dir.iterdir()) == [".rsretrieve", "embeddings.npy", "ids.parquet", "index.faiss", "manifest.json"]
    manifest = json.loads((index_dir / "manifest.json").read_text())
    ds = CrisisLandMark(sample_root)
    assert manifest["counts"]["total"] == len(ds.samples)
    assert manifest["counts"]["s1"] + manifest["counts"]["s2"] == len(ds.samples)
    assert manifest["encoder"]["model"] == "rsretrieve-tiny" and manifest["encoder"]["weights_sha256"]
    assert manifest["adapters"] == {"s2": "rgb", "s1": "sar"}
    assert manifest["dataset"]["fingerprint"] == ds.fingerprint()
    assert manifest["dataset"]["split"] == "test"
    assert {"torch", "faiss-cpu", "open_clip_torch", "rsretrieve"} <= set(manifest["versions"])
    ids = pq.read_table(index_dir / "ids.parquet")
    assert ids.column_names == ["key", "sensor", "labels", "lon", "lat"]
    assert manifest["locations"] == {"known": len(ds.samples), "unknown": 0}
    loaded = load_index(index_dir)
    assert loaded.embeddings.shape == (len(ds.samples), manifest["embed_dim"])
    np.testing.assert_allclose(np.linalg.norm(loaded.embeddings, axis=1), 1, rtol=1e-5)
    assert not (index_dir.parent / "idx.partial").exists()


def test_up_to_date_index_is_reused_and_others_need_force(index_dir, sample_root, tiny_pipeline) -> None:  # noqa: ANN001
    ds = CrisisLandMark(sample_root)
    before = (index_dir / "manifest.json").read_text()
    calls = []
    build_index(ds, tiny_pipeline, index_dir, batch_size=8, on_batch=calls.append)
    assert calls == [] and (index_dir / "manifest.json").read_text() == before
    with pytest.raises(DataError, match=r"was built differently \(dataset limit None -> 5\); pass --force"):
        build_index(CrisisLandMark(sample_root, limit=5), tiny_pipeline, index_dir, batch_size=8)


def test_interrupted_run_resumes_from_saved_batches(sample_root, tiny_pipeline, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    ds = CrisisLandMark(sample_root)
    out = tmp_path / "idx"
    original = tiny_pipeline.embed
    seen: list[int] = []

    def failing(batch):  # noqa: ANN001, ANN202
        if len(seen) == 2:
            raise KeyboardInterrupt
        seen.append(len(batch.keys))
        return original(batch)

    monkeypatch.setattr(tiny_pipeline, "embed", failing)
    with pytest.raises(KeyboardInterrupt):
        build_index(ds, tiny_pipeline, out, batch_size=4)
    assert not out.exists()  # nothing half-written at the output
    assert len(list((tmp_path / "idx.partial").glob("batch-*.npz"))) == 2

    resumed: list[int] = []

    def counting(batch):  # noqa: ANN001, ANN202
        resumed.append(len(batch.keys))
        return original(batch)

    monkeypatch.setattr(tiny_pipeline, "embed", counting)
    build_index(ds, tiny_pipeline, out, batch_size=4)
    assert sum(resumed) == len(ds.samples) - sum(seen)

    monkeypatch.setattr(tiny_pipeline, "embed", original)
    fresh = tmp_path / "fresh"
    build_index(ds, tiny_pipeline, fresh, batch_size=4)
    a, b = load_index(out), load_index(fresh)
    assert a.keys == b.keys and len(set(a.keys)) == len(a.keys)
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-6)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_agree_with_exact_on_a_small_corpus(index_dir, sample_root, tiny_pipeline, tmp_path, kind) -> None:  # noqa: ANN001
    from rsretrieve.search import search

    out = tmp_path / kind
    settings = IndexSettings(kind=kind, nlist=2, nprobe=2)
    manifest = build_index(CrisisLandMark(sample_root), tiny_pipeline, out, batch_size=8, settings=settings)
    assert manifest["index"]["kind"] == kind
    queries = {"q": "satellite image of water"}
    exact = search(load_index(index_dir), tiny_pipeline.encoder, queries, 10)
    approx = search(load_index(out), tiny_pipeline.encoder, queries, 10)
    # every cell probed / small graph: the exact order; scores to float precision (faiss's HNSW
    # distance kernel rounds differently from the flat one's since 1.15)
    assert [d for d, _ in approx.ranked("q")] == [d for d, _ in exact.ranked("q")]
    np.testing.assert_allclose([s for _, s in approx.ranked("q")], [s for _, s in exact.ranked("q")], rtol=1e-6)


def test_corrupt_index_folder_is_reported(index_dir, tmp_path) -> None:  # noqa: ANN001
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(index_dir, broken)
    (broken / "index.faiss").unlink()
    with pytest.raises(DataError, match="index.faiss is missing"):
        load_index(broken)
    with pytest.raises(DataError, match="manifest.json not found"):
        load_index(tmp_path)
    (broken / "manifest.json").write_text("{")
    with pytest.raises(DataError, match="manifest.json: invalid JSON"):
        load_index(broken)


def test_a_damaged_index_is_not_reused(sample_root, tiny_pipeline, tmp_path) -> None:  # noqa: ANN001
    ds, out = CrisisLandMark(sample_root), tmp_path / "idx"
    manifest = build_index(ds, tiny_pipeline, out, batch_size=8, verify=True)
    assert set(manifest["files"]) == {"embeddings.npy", "ids.parquet", "index.faiss"}
    assert build_index(ds, tiny_pipeline, out, batch_size=8, verify=True)["reused"]
    faiss_file, embeddings = out / "index.faiss", out / "embeddings.npy"
    data = bytearray(faiss_file.read_bytes())
    faiss_file.write_bytes(b"JUNK" + bytes(data[4:]))  # same size, no FAISS header
    with pytest.raises(DataError, match="is damaged \\(index.faiss does not start with a FAISS header\\); pass --force"):
        build_index(ds, tiny_pipeline, out, batch_size=8)
    faiss_file.write_bytes(bytes(data[:100]))
    with pytest.raises(DataError, match=rf"index.faiss is 100 bytes, the manifest records {len(data)}"):
        build_index(ds, tiny_pipeline, out, batch_size=8)
    faiss_file.write_bytes(bytes(data))
    raw = bytearray(embeddings.read_bytes())
    raw[-1] ^= 0xFF  # one bit of one vector: only the recorded hash sees it
    embeddings.write_bytes(bytes(raw))
    assert build_index(ds, tiny_pipeline, out, batch_size=8, verify=False)["reused"] is True
    with pytest.raises(DataError, match="embeddings.npy does not hash as recorded \\(--verify\\)"):
        build_index(ds, tiny_pipeline, out, batch_size=8, verify=True)
    assert "reused" not in build_index(ds, tiny_pipeline, out, batch_size=8, force=True, verify=True)


def test_a_load_during_a_forced_rebuild_reads_one_build_whole(sample_root, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """`index --force` swaps the rebuilt folder in (rename old away, rename new in, remove old).
    A load that reads the manifest just before that swap must still get one build's files: the
    old one whole, or, once the old files are gone, the new one whole."""
    import shutil

    import rsretrieve.index as index_module
    from rsretrieve.embeddings import build_pipeline
    from rsretrieve.encoders import EncoderSpec

    builds = {}
    for seed in (1, 2):
        folder = tmp_path / f"build{seed}"
        build_index(CrisisLandMark(sample_root, limit=16), build_pipeline(EncoderSpec("random", "random", None, seed)), folder)
        builds[seed] = np.load(folder / "embeddings.npy")
    assert not np.array_equal(builds[1], builds[2])
    target = tmp_path / "idx"
    real = index_module.read_manifest

    def swap() -> None:  # what io.atomic_dir does when --force replaces an index
        fresh = tmp_path / ".idx.tmp"
        shutil.copytree(tmp_path / "build2", fresh)
        old = tmp_path / ".idx.old"
        os.replace(target, old)
        os.replace(fresh, target)
        shutil.rmtree(old)

    for when in ("before the files", "after the ids"):
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(tmp_path / "build1", target)
        swapped = []

        def then_swap(call, moment: str):  # noqa: ANN001, ANN202 - ``call`` as it is, then the swap at ``moment``
            def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                result = call(*args, **kwargs)
                if not swapped and when == moment:
                    swapped.append(True)
                    swap()
                return result
            return wrapped

        import pyarrow as pa

        monkeypatch.setattr(index_module, "read_manifest", then_swap(real, "before the files"))
        monkeypatch.setattr(pa, "memory_map", then_swap(pa.memory_map, "after the ids"))
        loaded = load_index(target)
        monkeypatch.undo()
        seed = loaded.manifest["encoder"]["seed"]
        assert swapped, when
        assert np.array_equal(np.asarray(loaded.embeddings), builds[seed]), f"{when}: manifest of build {seed}, other vectors"
        assert loaded.labels and loaded.keys

