"""Paired retrieval in every direction: the field's caption benchmarks (text -> image and
image -> text), image -> caption on Git-10M caption indexes, and Sentinel-1 <-> Sentinel-2
on BigEarthNet.txt pairs.

Each is a set of queries whose relevant documents are their pairs. The ranked lists become
runs and are scored by the metric backend like every other run (trec_eval by default).
``recall@k`` of paired retrieval is clip_benchmark's: a query scores 1 when any of its
relevant documents is in the top k (for text -> image, with one image per caption, this is
plain recall), which is trec_eval's ``success_k`` = the ``hit_rate@k`` metric.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.errors import ConfigError, DataError, warn
from rsretrieve.evaluate import EvalOutput, check_backend, score_run
from rsretrieve.encoders import check_finite
from rsretrieve.registry import unknown_name_error
from rsretrieve.runs import Run

RECALL_KS = (1, 5, 10)
IMAGE_BATCH = 64
MRR_DEPTH = 100  # runs of image-to-caption and cross-sensor retrieval keep the top 100: mrr@100
TEXT_BATCH = 256


@dataclass(frozen=True)
class Protocol:
    """How one paper's script turns a caption benchmark into queries and scores.

    ``group_by_filename``: images in sorted file-name order (``np.unique``), the captions of
    one file grouped whatever entries they came from. ``deduplicate``: one text query per
    distinct caption, relevant to every image that carries it. ``percent``: the script
    prints percent rounded to 2 decimals, mR the mean of the unrounded six (RemoteCLIP) or of
    the six already rounded (``mean_of_rounded``, GeoRSCLIP). ``ties``: the script's tie rule
    (``hits``)."""

    name: str
    source: str
    capitalize: bool = False
    prefix: str = ""
    group_by_filename: bool = False
    deduplicate: bool = False
    percent: bool = False
    mean_of_rounded: bool = False  # GeoRSCLIP's script averages the six values it has already rounded
    ties: str = "topk"  # how the script breaks tied scores: see hits()


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("clip_benchmark", "clip_benchmark/metrics/zeroshot_retrieval.py: captions as given, images in file order"),
    Protocol("remoteclip", "RemoteCLIP remoteclip_retrieval.py: raw.capitalize(), captions grouped per file name, x100",
             capitalize=True, group_by_filename=True, percent=True),
    Protocol("georsclip", "RS5M (GeoRSCLIP) inference_tool.py: captions as given, grouped per file name, x100",
             group_by_filename=True, percent=True, mean_of_rounded=True),
    Protocol("skyscript", "SkyScript cross_modal_retrieval.ipynb: 'a satellite image. ' + caption, distinct captions",
             prefix="a satellite image. ", deduplicate=True, ties="argsort"),
)}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise unknown_name_error("protocol", name, list(PROTOCOLS))
    return PROTOCOLS[name]


@dataclass(frozen=True)
class Pairs:
    """Image names, text queries, and the images each text belongs to (indexes into images)."""

    images: list[str]
    texts: list[str]
    text_images: list[tuple[int, ...]]


def make_pairs(items: Sequence[Any], protocol: Protocol) -> Pairs:
    """The queries of a caption benchmark's ``items`` (``filename``, ``captions``) under ``protocol``."""
    def text(caption: str) -> str:
        return protocol.prefix + (caption.capitalize() if protocol.capitalize else caption)

    if protocol.deduplicate:
        images = sorted({item.filename for item in items})
        where = {name: i for i, name in enumerate(images)}
        owners: dict[str, set[int]] = {}
        for item in items:
            for caption in item.captions:
                owners.setdefault(text(caption), set()).add(where[item.filename])
        texts = sorted(owners)
        return Pairs(images, texts, [tuple(sorted(owners[t])) for t in texts])
    if protocol.group_by_filename:
        grouped: dict[str, list[str]] = {}
        for item in items:
            grouped.setdefault(item.filename, []).extend(text(c) for c in item.captions)
        images = sorted(grouped)
        captions = [(i, c) for i, name in enumerate(images) for c in grouped[name]]
    else:
        images = [item.filename for item in items]
        captions = [(i, text(c)) for i, item in enumerate(items) for c in item.captions]
    return Pairs(images, [c for _, c in captions], [(i,) for i, _ in captions])


def ranked(scores: Any, qids: Sequence[str], names: Sequence[str], depth: int) -> Run:
    """The top ``depth`` documents of each row of a (queries x documents) score matrix."""
    import torch

    scores = torch.as_tensor(scores)
    depth = min(depth, scores.shape[1])
    top = torch.topk(scores, depth, dim=1)
    return Run.from_search(qids, top.values.double().numpy(), top.indices.numpy(), names)


def paired_metrics(ks: Sequence[int] = RECALL_KS) -> list[str]:
    """The names a caption benchmark scores, in report order."""
    return [*(f"{d}_recall@{k}" for d in ("t2i", "i2t") for k in ks), "mean_recall"]


def hit_metrics(ks: Sequence[int]) -> list[str]:
    return [f"hit_rate@{k}" for k in ks]


TIE_TEXT = {"topk": "torch.topk(scores, k) per cutoff, as clip_benchmark's recall_at_k",
            "argsort": "one torch.argsort per query, cut at each k, as SkyScript's notebook"}
REFERENCE_BATCH = 64  # clip_benchmark's (and RemoteCLIP's) batch of query rows for torch.topk
TIE_RULES = ("topk", "argsort")


def query_scores(queries: Any, documents: Any, rule: str) -> Any:
    """The (queries x documents) scores the protocol's script ranks: clip_benchmark's one
    float32 product ``queries @ documents.T``, or SkyScript's ``100 * query @ documents.T``
    computed one query at a time (the rounding, and so the ties, follow the script's own)."""
    import torch

    if rule == "topk":
        return queries @ documents.T
    return torch.stack([100 * row @ documents.T for row in queries]) if len(queries) else queries @ documents.T


def hits(scores: Any, positives: Any, k: int, rule: str) -> np.ndarray:
    """Per query, whether a positive is among the first ``k`` as the protocol's script ranks
    them, ties included. ``topk`` (clip_benchmark's ``recall_at_k``, which RemoteCLIP and
    GeoRSCLIP call): ``torch.topk(scores, k)`` per cutoff, over batches of 64 query rows.
    ``argsort`` (SkyScript's notebook): one ``torch.argsort(descending=True)`` per query, its
    first k. Where tied scores straddle the cutoff, the two rules may pick different documents."""
    import torch

    k = min(k, scores.shape[1])
    found = []
    for start in range(0, scores.shape[0], REFERENCE_BATCH):
        block, wanted = scores[start : start + REFERENCE_BATCH], positives[start : start + REFERENCE_BATCH]
        if rule == "topk":
            top = torch.topk(block, k, dim=1)[1]
        else:
            top = torch.stack([torch.argsort(row, descending=True)[:k] for row in block])
        found.append(torch.gather(wanted, 1, top).any(dim=1).numpy())
    return np.concatenate(found) if found else np.zeros(0, bool)


def tie_bounds(scores: Any, positives: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, whether a positive is in the top ``k`` under the most and the least
    favourable order of tied scores. They differ only where documents tied at the k-th
    score straddle the cutoff and some of them are positive."""
    values = scores.double().numpy()
    wanted = positives.numpy()
    k = min(k, values.shape[1])
    kth = -np.partition(-values, k - 1, axis=1)[:, k - 1 : k]
    above, tied = values > kth, values == kth
    slots = k - above.sum(axis=1)
    sure = (wanted & above).any(axis=1)
    tied_positive = (wanted & tied).sum(axis=1)
    tied_negative = tied.sum(axis=1) - tied_positive
    return sure | (tied_positive > 0), sure | (tied_negative < slots)


def score_pairs(text_vectors: np.ndarray, image_vectors: np.ndarray, pairs: Pairs, ks: Sequence[int] = RECALL_KS,
                ties: str = "topk") -> tuple[dict[str, float], dict[str, Run], dict[str, dict[str, float]]]:
    """t2i_recall@k, i2t_recall@k and mean_recall of embedded pairs as the protocol's script
    computes them (``hits``), the two runs, and the spread that tied scores allow: for each
    recall whose value a tie at its cutoff makes arbitrary, the optimistic and pessimistic
    value and the number of queries affected.

    Embeddings are float32, as clip_benchmark computes its scores."""
    import torch

    if ties not in TIE_RULES:
        raise unknown_name_error("tie rule", ties, TIE_RULES)
    texts = torch.from_numpy(np.ascontiguousarray(text_vectors, np.float32))
    images = torch.from_numpy(np.ascontiguousarray(image_vectors, np.float32))
    positives = torch.zeros((len(pairs.texts), len(pairs.images)), dtype=torch.bool)
    for row, owners in enumerate(pairs.text_images):
        positives[row, list(owners)] = True
    text_ids = [f"t{i:07d}" for i in range(len(pairs.texts))]
    image_ids = [f"i{i:07d}" for i in range(len(pairs.images))]
    directions = {"t2i": (query_scores(texts, images, ties), positives, text_ids, image_ids),
                  "i2t": (query_scores(images, texts, ties), positives.T.contiguous(), image_ids, text_ids)}
    out: dict[str, float] = {}
    spread: dict[str, dict[str, float]] = {}
    runs: dict[str, Run] = {}
    for direction, (scores, wanted, qids, names) in directions.items():
        runs[direction] = ranked(scores, qids, names, max(ks))
        for k in ks:
            name = f"{direction}_recall@{k}"
            out[name] = float(hits(scores, wanted, k, ties).mean()) if len(qids) else 0.0
            best, worst = tie_bounds(scores, wanted, k)
            affected = int((best != worst).sum())
            if affected:
                spread[name] = {"optimistic": float(best.mean()), "pessimistic": float(worst.mean()), "queries": affected}
    out["mean_recall"] = float(np.mean([out[f"{d}_recall@{k}"] for d in ("i2t", "t2i") for k in ks]))
    return out, runs, spread


def as_reported(scores: Mapping[str, float], protocol: Protocol) -> dict[str, float] | None:
    """The scores as the protocol's script prints them (percent, 2 decimals), or None."""
    if not protocol.percent:
        return None
    shown = {name: round(float(value) * 100, 2) for name, value in scores.items()}
    if protocol.mean_of_rounded:
        shown["mean_recall"] = round(float(np.mean([v for name, v in shown.items() if name != "mean_recall"])), 2)
    return shown


def embed_texts(encoder: Any, texts: Sequence[str]) -> np.ndarray:
    parts = [check_finite(encoder.encode_texts(list(texts[i : i + TEXT_BATCH])), encoder, texts[i : i + TEXT_BATCH], "caption")
             for i in range(0, len(texts), TEXT_BATCH)]
    return np.concatenate(parts) if parts else np.zeros((0, encoder.embed_dim), np.float32)


def caption_report(
    data: Path, requested: Any = None, protocol: str = "clip_benchmark", split: str | None = None,
    images: Path | None = None, device: str | None = None, ks: Sequence[int] = RECALL_KS,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Run]]:
    """What ``eval --dataset rs-captions`` runs: embed the split's images with the model's own
    open_clip preprocessing and its captions, score both directions under ``protocol`` with
    its script's own tie rule (no metric backend: the reference is the script)."""
    from rsretrieve.datasets import open_dataset
    from rsretrieve.encoders import load_encoder
    from rsretrieve.index import package_versions
    from rsretrieve.zoo import resolve_model

    chosen = get_protocol(protocol)
    dataset = open_dataset("rs-captions", Path(data), split=split, images=images)
    pairs = make_pairs(dataset.items, chosen)
    spec = requested if requested is not None else resolve_model(None)
    if spec.backend != "open_clip":
        raise ConfigError(f"caption benchmarks embed RGB files with an open_clip model's own preprocessing; "
                          f"{spec.label()} is not an open_clip model (give --model with a zoo card such as "
                          "remoteclip-vit-b-32, or an open_clip architecture with --pretrained FILE)")
    if dataset.repeated:
        first, count = next(iter(dataset.repeated.items()))
        warn(f"{dataset.annotations}: {len(dataset.repeated)} image file(s) named by more than one entry of split "
             f"'{dataset.split}' (first: '{first}', {count} entries); each file is embedded once"
             + ("; the protocol groups the entries of one file" if chosen.group_by_filename or chosen.deduplicate
                else "; clip_benchmark's protocol scores each entry as its own image, as the reference does"))
    encoder = load_encoder(spec, device)
    started = time.perf_counter()
    distinct = list(dict.fromkeys(pairs.images))
    vectors = []
    for start in range(0, len(distinct), IMAGE_BATCH):
        names = distinct[start : start + IMAGE_BATCH]
        vectors.append(check_finite(encoder.encode_files([dataset.open_image(n) for n in names]), encoder, names, "image"))
        if on_batch:
            on_batch(len(names))
    row = {name: i for i, name in enumerate(distinct)}
    image_vectors = np.concatenate(vectors)[[row[name] for name in pairs.images]]
    scores, runs, spread = score_pairs(embed_texts(encoder, pairs.texts), image_vectors, pairs, ks, chosen.ties)
    report = {
        "kind": "paired",
        "task": "caption-benchmark",
        "metrics": list(scores),
        "results": {"all": {"n_queries": len(pairs.texts) + len(pairs.images), "scores": scores}},
        "source": {
            "dataset": {"name": dataset.name, "path": str(dataset.root.resolve()), "annotations": str(dataset.annotations.resolve()),
                        "layout": dataset.layout, "encoding": dataset.encoding, "split": dataset.split,
                        "images": str(dataset.images_dir.resolve()), "fingerprint": dataset.fingerprint()},
            "protocol": dataclasses.asdict(chosen),
            "encoder": encoder.describe(),
            "counts": {"images": len(pairs.images), "texts": len(pairs.texts)},
            "scoring": f"the protocol's own rule ({chosen.ties}): " + TIE_TEXT[chosen.ties],
        },
        "ties": spread,
        "diagnostics": _no_diagnostics(),
        "timings": {"embed_and_score_s": round(time.perf_counter() - started, 3)},
        "versions": package_versions(),
    }
    reported = as_reported(scores, chosen)
    if reported is not None:
        report["as_reported"] = reported
    return report, runs


def _no_diagnostics() -> dict[str, Any]:
    return {"queries_without_judgements": [], "judged_docs_not_in_corpus": 0, "judged_docs_not_in_corpus_examples": []}


def cross_sensor_report(index_dir: Path, ks: Sequence[int] = RECALL_KS, backend: str = "trec_eval") -> tuple[dict[str, Any], dict[str, Run]]:
    """S1 queries against the S2 corpus and the reverse, on an index of a BigEarthNet.txt task
    (both sensors of each patch indexed): the paired patch is the one relevant document.
    The stored embeddings are the queries, so no encoder loads."""
    import pyarrow.parquet as pq

    from rsretrieve.index import load_index

    check_backend(backend)
    index = load_index(index_dir)
    if index.manifest["dataset"]["name"] not in ("bigearthnet-txt", "bigearthnet"):
        raise ConfigError(f"--task cross-sensor needs an index of a BigEarthNet.txt task (S1/S2 pairs); "
                          f"{index.path} indexes {index.manifest['dataset']['name']}")
    patches = Path(index.manifest["dataset"]["path"]) / "patches.parquet"
    if not patches.is_file():
        raise DataError(f"{patches} not found: the task folder the index was built from is needed for its S1/S2 pairs")
    table = pq.read_table(patches, columns=["patch_id", "s1_name"])
    row = {key: i for i, key in enumerate(index.keys)}
    pairs = [(s2, s1) for s2, s1 in zip(table.column("patch_id").to_pylist(), table.column("s1_name").to_pylist())
             if s2 in row and s1 in row]
    if not pairs:
        raise DataError(f"index {index.path} holds no S1/S2 pair of the task (index both sensors: --sensors all)")
    metrics = [*(f"recall@{k}" for k in ks), f"mrr@{MRR_DEPTH}"]
    results, runs = {}, {}
    for source, target, (qi, di) in (("s1", "s2", (1, 0)), ("s2", "s1", (0, 1))):
        queries, docs = [p[qi] for p in pairs], [p[di] for p in pairs]
        corpus = index.sensor_rows(target)
        names = [index.keys[i] for i in corpus]
        vectors = np.asarray(index.embeddings[[row[q] for q in queries]], np.float32)
        scores = vectors @ np.asarray(index.embeddings[corpus], np.float32).T
        name = f"{source}->{target}"
        runs[name] = ranked(scores, queries, names, max(max(ks), MRR_DEPTH))
        results[name] = {k: v for k, v in score_run({q: {d: 1} for q, d in zip(queries, docs)}, runs[name], metrics, backend).items()
                         if k != "per_query"}
    report = {
        "kind": "paired", "task": "cross-sensor", "metrics": metrics, "results": results,
        "source": {"index": str(Path(index_dir).resolve()), "dataset": index.manifest["dataset"],
                   "encoder": index.manifest["encoder"], "adapters": index.manifest.get("adapters"),
                   "counts": {"pairs": len(pairs), "s1_corpus": int(index.sensor_rows("s1").size),
                              "s2_corpus": int(index.sensor_rows("s2").size)}, "backend": backend},
        "diagnostics": _no_diagnostics(),
        "versions": index.manifest["versions"],
    }
    return report, runs


def image_to_caption_report(
    folder: Path, limit: int | None = None, ks: Sequence[int] = RECALL_KS, backend: str = "trec_eval",
    requested: Any = None, device: str | None = None, on_batch: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Run]]:
    """Image -> text on a Git-10M caption index: each image of the dataset the index was built
    from (the first ``limit``) is a query; its relevant documents are the caption rows of the
    same ``img_name``. Images are embedded as ``describe`` embeds them."""
    import pyarrow.parquet as pq

    from rsretrieve.captions import CaptionIndex
    from rsretrieve.datasets import open_dataset
    from rsretrieve.embeddings import build_pipeline
    from rsretrieve.search import check_weights, manifest_spec

    check_backend(backend)
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    index = CaptionIndex(folder)
    dataset = open_dataset("git10m", Path(index.manifest["dataset"]["path"]))
    if dataset.fingerprint() != index.manifest["dataset"]["fingerprint"]:
        raise DataError(f"{dataset.root} changed since caption index {folder} was built; rebuild it (index --what captions --force)")
    pipeline = build_pipeline(manifest_spec(index.manifest, Path(folder), requested), sensors=("rgb",), device=device)
    check_weights(index.manifest, pipeline.encoder, Path(folder))
    names = pq.read_table(Path(folder) / "captions.parquet", columns=["img_name"]).column("img_name").to_pylist()
    rows_of: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        rows_of.setdefault(name, []).append(i)
    depth = max(max(ks), MRR_DEPTH)
    qids, hits = [], []
    for batch in dataset.iter_image_batches(IMAGE_BATCH, limit):
        found = index.search(pipeline.embed(batch), depth)
        qids.extend(batch.keys)
        hits.extend(found)
        if on_batch:
            on_batch(len(batch.keys))
    if not qids:
        raise DataError(f"{dataset.root}: no row has image bytes; image-to-caption evaluation needs the images")
    run = Run.from_dict({q: {str(h["row"]): h["score"] for h in found} for q, found in zip(qids, hits)})
    qrels = {q: {str(r): 1 for r in rows_of.get(q, [])} for q in qids}
    metrics = [*hit_metrics(ks), f"mrr@{MRR_DEPTH}"]
    scored = score_run(qrels, run, metrics, backend)
    scores = {f"i2t_recall@{k}": scored["scores"][m] for k, m in zip(ks, metrics)}
    scores[f"i2t_mrr@{MRR_DEPTH}"] = scored["scores"][f"mrr@{MRR_DEPTH}"]
    report = {
        "kind": "paired", "task": "image-to-caption", "metrics": list(scores),
        "results": {"all": {"n_queries": scored["n_queries"], "scores": scores}},
        "source": {"index": str(Path(folder).resolve()), "dataset": index.manifest["dataset"],
                   "encoder": index.manifest["encoder"], "factory": index.manifest["index"]["factory"],
                   "approximate": index.approximate, "counts": {"images": len(qids), "captions": len(names)},
                   "backend": backend},
        "diagnostics": {**_no_diagnostics(),
                        "queries_without_judgements": sorted(q for q in qids if not rows_of.get(q))},
        "versions": index.manifest["versions"],
    }
    return report, {"i2t": run}


TASKS = ("cross-sensor",)
# Options of `eval` that no paired evaluation takes, and those each one takes.
PAIRED_REFUSED = {
    "--run": "paired tasks rank their own runs", "--qrels": "the pairs are the judgements",
    "--queries": "the pairs are the queries", "--depth": "the depth is the largest recall cutoff",
    "--group-by": "paired queries have no fields", "--bbox": "not implemented for paired tasks",
    "--near": "not implemented for paired tasks", "--metrics": "paired tasks score recall@1/5/10, and mean recall or mrr@100",
}
CAPTION_REFUSED = {"--backend": "each protocol scores recall by its own script's rule, ties included "
                                "(clip_benchmark's torch.topk per cutoff; SkyScript's argsort), not by a metric backend"}
TAKES = {
    "caption-benchmark": {"--dataset", "--data", "--protocol", "--split", "--images", "--model", "--pretrained", "--device"},
    "cross-sensor": {"--index", "--task", "--backend"},
    "image-to-caption": {"--index", "--limit", "--model", "--pretrained", "--device", "--backend"},
}
PAIRED_ONLY = ("--protocol", "--split", "--images", "--limit", "--task")


def paired_task(index_dir: Path | None, dataset: str | None, task: str | None) -> str | None:
    """Which paired evaluation the options of ``eval`` ask for (None: a text-to-image one)."""
    from rsretrieve.captions import is_caption_index

    if task is not None:
        if task not in TASKS:
            raise unknown_name_error("task", task, TASKS)
        return task
    if dataset == "rs-captions":
        return "caption-benchmark"
    if index_dir is not None and dataset is None and is_caption_index(Path(index_dir)):
        return "image-to-caption"
    return None


def refuse_options(task: str | None, given: Mapping[str, object]) -> None:
    """An option of ``eval`` that the chosen evaluation cannot honour is an error naming it."""
    present = [name for name, value in given.items() if value not in (None, False, ())]
    if task is None:
        wrong = [name for name in present if name in PAIRED_ONLY]
        if wrong:
            raise ConfigError(f"{wrong[0]} belongs to paired evaluations (--dataset rs-captions, --task cross-sensor, "
                              "or --index on a caption index)")
        if given.get("--dataset") is not None or given.get("--data") is not None:
            raise ConfigError("eval --dataset/--data evaluate a caption benchmark (--dataset rs-captions); "
                              "to score text-to-image retrieval give --index")
        return
    for name in present:
        if name in PAIRED_REFUSED:
            raise ConfigError(f"{name} cannot be used with the {task} evaluation: {PAIRED_REFUSED[name]}")
        if task == "caption-benchmark" and name in CAPTION_REFUSED:
            raise ConfigError(f"{name} cannot be used with the {task} evaluation: {CAPTION_REFUSED[name]}")
        if name not in TAKES[task] and name not in ("--out", "--save-run"):
            raise ConfigError(f"{name} cannot be used with the {task} evaluation (it takes {', '.join(sorted(TAKES[task]))})")
    if task == "caption-benchmark" and given.get("--data") is None:
        raise ConfigError("--dataset rs-captions needs --data (the benchmark's folder or annotation file)")
    if task != "caption-benchmark" and given.get("--index") is None:
        raise ConfigError(f"the {task} evaluation needs --index")


def paired_to_files(
    task: str, given: Mapping[str, object], results_out: Path | None = None, run_out: Path | None = None,
    backend: str = "trec_eval", requested: Any = None, device: str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> EvalOutput:
    """What ``eval`` runs for a paired task: options checked, every output location checked
    before any work, the results JSON (and with ``run_out`` each direction's run) written."""
    from rsretrieve.io import check_writable, name_part, results_path, write_json
    from rsretrieve.runs import write_run

    refuse_options(task, given)
    scored = Path(given["--data"] if task == "caption-benchmark" else given["--index"])  # type: ignore[arg-type]
    label = str(given.get("--protocol") or "clip_benchmark") if task == "caption-benchmark" else task
    if task == "caption-benchmark":  # results/NAME.MODEL.PROTOCOL.results.json: one file per model, not in the data folder
        model = name_part(str(given.get("--model") or "rsretrieve-default"))
        default = Path("results") / f"{Path(os.path.abspath(scored)).name}.{model.strip('.-')}.{label}.results.json"
    else:  # NAME.results.json -> NAME.<task>.results.json, beside the index NAME
        default = results_path(scored)
        default = default.with_name(default.name.replace(".results.json", f".{label}.results.json"))
    target = Path(results_out) if results_out is not None else default
    for path in (target, run_out):
        if path is not None:
            check_writable(Path(path))
    if task == "caption-benchmark":
        report, runs = caption_report(scored, requested, str(given.get("--protocol") or "clip_benchmark"),
                                      given.get("--split"), given.get("--images"), device, on_batch=on_batch)  # type: ignore[arg-type]
    elif task == "cross-sensor":
        report, runs = cross_sensor_report(scored, backend=backend)
    else:
        report, runs = image_to_caption_report(scored, given.get("--limit"), backend=backend, requested=requested,  # type: ignore[arg-type]
                                               device=device, on_batch=on_batch)
    saved = []
    if run_out is not None:
        for name, run in runs.items():
            path = Path(run_out).with_name(Path(run_out).stem + "." + name.replace("->", "-to-") + Path(run_out).suffix)
            write_run(run, path)
            saved.append(path)
    write_json(target, report)
    return EvalOutput(report, target, saved)
