"""Paired retrieval checked against the reference code itself: clip_benchmark's
``zeroshot_retrieval.evaluate`` on a plain open_clip model and DataLoader, and the
papers' protocols (RemoteCLIP's grouping and capitalisation, SkyScript's prefix and
deduplication) written out here from their scripts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from clip_benchmark.metrics import zeroshot_retrieval

from rsretrieve.datasets.fixtures.rs_captions import generate_rs_captions
from rsretrieve.datasets.rs_captions import RSCaptions
from rsretrieve.encoders import EncoderSpec
from rsretrieve.errors import ConfigError
from rsretrieve.paired import PROTOCOLS, Pairs, caption_report, make_pairs, score_pairs

TINY = EncoderSpec("open_clip", "rsretrieve-tiny", None, 0)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_rs_captions(tmp_path_factory.mktemp("rs") / "bench", n_images=60, seed=3)


@pytest.fixture(scope="module")
def plain_open_clip():  # noqa: ANN201
    """The tiny architecture as a plain open_clip script creates it (same seed)."""
    from rsretrieve.encoders.open_clip import _open_clip

    oc = _open_clip()
    torch.manual_seed(0)
    model, _, preprocess = oc.create_model_and_transforms("rsretrieve-tiny")
    return model.eval(), preprocess, oc.get_tokenizer("rsretrieve-tiny")


class _Listed(torch.utils.data.Dataset):
    """(image, captions) pairs as a reference script lists them."""

    def __init__(self, root: Path, entries: list[tuple[str, list[str]]], transform) -> None:  # noqa: ANN001
        self.root, self.entries, self.transform = root, entries, transform

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):  # noqa: ANN204
        from PIL import Image

        name, captions = self.entries[i]
        return self.transform(Image.open(self.root / "images" / name)), captions


def _clip_benchmark(root: Path, entries, plain_open_clip, batch_size: int = 7) -> dict[str, float]:  # noqa: ANN001
    from clip_benchmark.datasets.builder import get_dataset_collate_fn

    model, preprocess, tokenizer = plain_open_clip
    loader = torch.utils.data.DataLoader(_Listed(root, entries, preprocess), batch_size=batch_size,
                                         collate_fn=get_dataset_collate_fn("mscoco_captions"))
    got = zeroshot_retrieval.evaluate(model, loader, tokenizer, "cpu", amp=False, recall_k_list=[1, 5, 10])
    return {f"{'t2i' if m.startswith('image') else 'i2t'}_recall@{m.split('@')[1]}": v for m, v in got.items()}


# clip_benchmark averages in float32 (0.1 comes back as 0.10000000149); one query more or less
# would move a score by 1/60 at least, so 1e-6 tells equal counts from different ones.
FLOAT32 = 1e-6


def _karpathy_test(root: Path) -> list[tuple[str, list[str]]]:
    data = json.loads((root / "dataset_fixture.json").read_text())
    return [(e["filename"], [s["raw"] for s in e["sentences"]]) for e in data["images"] if e["split"] == "test"]


def test_default_protocol_equals_clip_benchmark(bench: Path, plain_open_clip) -> None:  # noqa: ANN001
    report, runs = caption_report(bench, TINY)
    expected = _clip_benchmark(bench, _karpathy_test(bench), plain_open_clip)
    scores = report["results"]["all"]["scores"]
    assert {k: scores[k] for k in expected} == pytest.approx(expected, abs=FLOAT32)
    assert scores["mean_recall"] == pytest.approx(np.mean(list(expected.values())), abs=FLOAT32)
    assert 0.0 < scores["t2i_recall@1"] < 1.0  # not a degenerate set where every number is 0 or 1
    assert report["source"]["counts"] == {"images": 12, "texts": 60}
    assert set(runs) == {"t2i", "i2t"}


def test_remoteclip_protocol_equals_its_script(bench: Path, plain_open_clip) -> None:  # noqa: ANN001
    """RemoteCLIP's JsonDataset: test captions flattened with raw.capitalize(), then grouped per
    file in np.unique order; the script prints x100 rounded to 2 decimals, mR of the unrounded."""
    flat = [(name, c.capitalize()) for name, captions in _karpathy_test(bench) for c in captions]
    names = [n for n, _ in flat]
    unique, first = np.unique(names, return_index=True)
    grouped = [(names[i], [c for n, c in flat if n == names[i]]) for i in first]
    expected = _clip_benchmark(bench, grouped, plain_open_clip)
    report, _ = caption_report(bench, TINY, protocol="remoteclip")
    assert {k: report["results"]["all"]["scores"][k] for k in expected} == pytest.approx(expected, abs=FLOAT32)
    printed = {k: round(v * 100, 2) for k, v in expected.items()}
    assert {k: report["as_reported"][k] for k in printed} == printed
    assert report["as_reported"]["mean_recall"] == round(float(np.mean([v * 100 for v in expected.values()])), 2)
    assert list(unique) == sorted(unique)


def _skyscript_reference(text_vectors: np.ndarray, image_vectors: np.ndarray, pairs_of_rows) -> dict[str, float]:  # noqa: ANN001
    """SkyScript's notebook: unique texts and images, argsort of 100 * logits, a hit when the
    top k meets the set of the query's pairs."""
    texts = sorted({t for _, t in pairs_of_rows})
    images = sorted({i for i, _ in pairs_of_rows})
    t_index, i_index = {t: n for n, t in enumerate(texts)}, {i: n for n, i in enumerate(images)}
    text2img: dict[str, set[int]] = {}
    img2text: dict[str, set[int]] = {}
    for image, text in pairs_of_rows:
        text2img.setdefault(text, set()).add(i_index[image])
        img2text.setdefault(image, set()).add(t_index[text])
    tv, iv = torch.from_numpy(text_vectors), torch.from_numpy(image_vectors)
    res = {}
    for k in (1, 5, 10):
        res[f"t2i_recall@{k}"] = np.mean([bool(set(torch.argsort(100 * tv[n] @ iv.T, descending=True)[:k].tolist()) & text2img[t])
                                          for n, t in enumerate(texts)])
        res[f"i2t_recall@{k}"] = np.mean([bool(set(torch.argsort(100 * iv[n] @ tv.T, descending=True)[:k].tolist()) & img2text[i])
                                          for n, i in enumerate(images)])
    return res


def test_skyscript_protocol_prefixes_and_deduplicates(tmp_path: Path) -> None:
    root = generate_rs_captions(tmp_path / "b", n_images=50, seed=1, shared_caption=True)
    items = RSCaptions(root).items
    pairs = make_pairs(items, PROTOCOLS["skyscript"])
    rows = [(item.filename, "a satellite image. " + c) for item in items for c in item.captions]
    assert len(pairs.texts) == len({t for _, t in rows}) == len(rows) - 1  # the shared caption counts once
    shared = pairs.texts.index("a satellite image. a plain satellite scene")
    assert len(pairs.text_images[shared]) == 2
    rng = np.random.default_rng(0)
    text_vectors = rng.normal(size=(len(pairs.texts), 16)).astype(np.float32)
    image_vectors = rng.normal(size=(len(pairs.images), 16)).astype(np.float32)
    scores, _, _ = score_pairs(text_vectors, image_vectors, pairs, ties="argsort")
    expected = _skyscript_reference(text_vectors, image_vectors, rows)
    assert {k: scores[k] for k in expected} == pytest.approx(expected, abs=1e-12)


def test_georsclip_protocol_groups_without_capitalising(tmp_path: Path) -> None:
    root = generate_rs_captions(tmp_path / "c", n_images=20, seed=2, layout="csv", encoding="gb18030")
    items = RSCaptions(root).items
    pairs = make_pairs(items, PROTOCOLS["georsclip"])
    assert pairs.images == sorted(i.filename for i in items)
    assert pairs.texts == [c for name in pairs.images for i in items if i.filename == name for c in i.captions]
    assert any("\u2019" in t for t in pairs.texts)  # read as gb18030, kept as written


def test_image_to_text_hit_means_any_caption() -> None:
    """Image 0's second caption is nearest to it: i2t recall@1 counts it, t2i ranks per caption."""
    pairs = Pairs(["a", "b"], ["a1", "a2", "b1"], [(0,), (0,), (1,)])
    texts = np.array([[0, 1], [1, 0], [0.6, 0.8]], np.float32)
    images = np.array([[1, 0], [0, 1]], np.float32)
    scores, runs, _ = score_pairs(texts, images, pairs, ks=(1,))
    assert scores["i2t_recall@1"] == 0.5  # a: a2 first (hit); b: a1 first (miss)
    assert scores["t2i_recall@1"] == pytest.approx(2 / 3)  # a1 -> b (miss), a2 -> a (hit), b1 -> b (hit)
    assert runs["i2t"].ranked("i0000000")[0][0] == "t0000001"


def test_unknown_protocol_is_an_error_before_any_work(bench: Path) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'remoteclip'"):
        caption_report(bench, TINY, protocol="remoteclp")


def test_cross_sensor_finds_the_paired_patch_as_a_bare_argsort_does(tmp_path: Path, tiny_pipeline) -> None:  # noqa: ANN001
    import pytrec_eval

    from rsretrieve.datasets.bigearthnet_txt import BigEarthNetTask, build_task
    from rsretrieve.datasets.fixtures import write_fixture
    from rsretrieve.index import build_index, load_index
    from rsretrieve.paired import cross_sensor_report

    ben = write_fixture("bigearthnet-txt", tmp_path / "ben", 40)
    build_task(ben / "BigEarthNet.txt.parquet", ben / "lmdb", "lmdb", tmp_path / "task", ("bench", "test", "train"))
    build_index(BigEarthNetTask(tmp_path / "task"), tiny_pipeline, tmp_path / "idx", batch_size=8)
    report, runs = cross_sensor_report(tmp_path / "idx")
    index = load_index(tmp_path / "idx")
    s1, s2 = index.sensor_rows("s1"), index.sensor_rows("s2")
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "task" / "patches.parquet").to_pylist()
    pair = {r["s1_name"]: r["patch_id"] for r in table}
    scores = index.embeddings[s1] @ index.embeddings[s2].T
    names = [index.keys[i] for i in s2]
    top1 = [names[int(np.argmax(row))] == pair[index.keys[q]] for q, row in zip(s1, scores)]
    assert report["results"]["s1->s2"]["scores"]["recall@1"] == pytest.approx(np.mean(top1))
    run = {index.keys[q]: {n: float(v) for n, v in zip(names, row)} for q, row in zip(s1, scores)}
    bare = pytrec_eval.RelevanceEvaluator({q: {pair[q]: 1} for q in run}, {"recip_rank"}).evaluate(run)
    assert report["results"]["s1->s2"]["scores"]["mrr@100"] == pytest.approx(np.mean([v["recip_rank"] for v in bare.values()]))
    assert report["source"]["counts"]["pairs"] == len(s1) == len(s2)


def _tied_benchmark() -> tuple[Pairs, np.ndarray, np.ndarray]:
    """30 images in 10 groups of 3 identical images (as repeated scenes embed alike), one
    caption per group, paired with the group's first image: every score ties with 2 others, so
    ties straddle the cutoffs 1, 5 and 10, with the positive inside the tie."""
    rng = np.random.default_rng(3)
    groups = rng.normal(size=(10, 8)).astype(np.float32)
    groups /= np.linalg.norm(groups, axis=1, keepdims=True)
    images = np.repeat(groups, 3, axis=0)
    texts = groups + rng.normal(scale=0.3, size=groups.shape).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    pairs = Pairs([f"im{i}" for i in range(30)], [f"c{j}" for j in range(10)], [(3 * j,) for j in range(10)])
    return pairs, texts, images


def test_straddling_ties_score_as_clip_benchmark_scores_them() -> None:
    """clip_benchmark's recall_at_k takes torch.topk(k) per cutoff; a ranked list cut at each
    k, re-sorted by trec_eval, gives other numbers when a tie straddles k."""
    import torch

    pairs, texts, images = _tied_benchmark()
    from rsretrieve.evaluate import score_run

    scores, runs, spread = score_pairs(texts, images, pairs)
    matrix = torch.from_numpy(texts) @ torch.from_numpy(images).T
    positive = torch.zeros((10, 30), dtype=torch.bool)
    positive[torch.arange(10), torch.arange(0, 30, 3)] = True
    for k in (1, 5, 10):
        for name, x, y in (("t2i", matrix, positive), ("i2t", matrix.T, positive.T)):
            reference = (zeroshot_retrieval.batchify(zeroshot_retrieval.recall_at_k, x, y, 64, "cpu", k=k) > 0).float().mean().item()
            assert scores[f"{name}_recall@{k}"] == pytest.approx(reference, abs=1e-7), (name, k)
    at_one = spread["t2i_recall@1"]
    assert at_one["pessimistic"] == 0.0 < at_one["optimistic"] and at_one["queries"] == round(at_one["optimistic"] * 10)
    qrels = {f"t{j:07d}": {f"i{3 * j:07d}": 1} for j in range(10)}
    resorted = score_run(qrels, runs["t2i"], ["hit_rate@1", "hit_rate@5", "hit_rate@10"])["scores"]
    assert any(resorted[f"hit_rate@{k}"] != pytest.approx(scores[f"t2i_recall@{k}"]) for k in (1, 5, 10))  # ties matter here
    for name, bounds in spread.items():
        assert bounds["pessimistic"] <= scores[name] <= bounds["optimistic"]


def test_straddling_ties_score_as_skyscript_scores_them() -> None:
    import torch

    pairs, texts, images = _tied_benchmark()
    scores, _, _ = score_pairs(texts, images, pairs, ties="argsort")
    tv, iv = torch.from_numpy(texts), torch.from_numpy(images)
    for k in (1, 5, 10):
        t2i = np.mean([3 * n in torch.argsort(100 * tv[n] @ iv.T, descending=True)[:k].tolist() for n in range(10)])
        i2t = np.mean([n % 3 == 0 and n // 3 in torch.argsort(100 * iv[n] @ tv.T, descending=True)[:k].tolist() for n in range(30)])
        assert scores[f"t2i_recall@{k}"] == pytest.approx(t2i, abs=1e-12)
        assert scores[f"i2t_recall@{k}"] == pytest.approx(i2t, abs=1e-12)


def test_the_spread_ties_allow_by_hand() -> None:
    from rsretrieve.paired import tie_bounds
    import torch

    scores = torch.tensor([[0.9, 0.5, 0.5, 0.5, 0.1]])
    positive = torch.tensor([[False, False, True, False, False]])
    best, worst = tie_bounds(scores, positive, 2)  # one slot left for three tied: the positive may or may not get it
    assert best.tolist() == [True] and worst.tolist() == [False]
    best, worst = tie_bounds(scores, positive, 4)  # three slots for three tied: it is in
    assert best.tolist() == worst.tolist() == [True]
    positive = torch.tensor([[False, True, True, False, False]])
    best, worst = tie_bounds(scores, positive, 3)  # two slots, one tied negative: a positive is always in
    assert best.tolist() == worst.tolist() == [True]


def test_a_model_that_is_not_open_clip_is_refused_before_it_loads(bench: Path) -> None:
    with pytest.raises(ConfigError, match="not an open_clip model"):
        caption_report(bench, None)


def test_a_file_named_by_two_entries_is_embedded_once_and_said(bench: Path, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import shutil

    root = Path(shutil.copytree(bench, tmp_path / "twice"))
    path = root / "dataset_fixture.json"
    data = json.loads(path.read_text())
    tests = [e for e in data["images"] if e["split"] == "test"]
    tests[1]["filename"] = tests[0]["filename"]
    path.write_text(json.dumps(data))
    opened: list[str] = []
    real = RSCaptions.open_image
    monkeypatch.setattr(RSCaptions, "open_image", lambda self, name: opened.append(name) or real(self, name))
    with pytest.warns(Warning, match=r"1 image file\(s\) named by more than one entry .*each file is embedded once"):
        report, _ = caption_report(root, TINY)
    assert len(opened) == len(set(opened)) == report["source"]["counts"]["images"] - 1
