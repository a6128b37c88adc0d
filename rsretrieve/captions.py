"""Caption indexes: Git-10M captions embedded with an encoder's text side, in FAISS.

Built in one streaming pass: the first ``train_size`` caption vectors train the index
(IVF centroids, PQ/SQ codebooks), then every batch is added and its metadata appended to
``captions.parquet``. Memory is the index itself plus one batch; per million 384-d vectors:
flat or HNSW ~1.5 GB (+ ~0.26 GB HNSW links at M=32), IVF-SQ8 ~0.39 GB, IVF-PQ48 ~0.06 GB.

Folder::

    manifest.json     kind "captions", encoder, dataset fingerprint, index settings, counts
    index.faiss       FAISS index (row i <-> captions.parquet row i)
    captions.parquet  img_name, caption, quality, resolution, zoom, lon, lat
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.config import IndexJob, foreign_message
from rsretrieve.datasets.base import Batch
from rsretrieve.datasets.git10m import Git10M
from rsretrieve.embeddings import ImagePipeline
from rsretrieve.encoders import Encoder, EncoderSpec, check_finite
from rsretrieve.errors import ConfigError, DataError, warn
from rsretrieve.index import EXACT_FILTER_ROWS, FORMAT_VERSION, package_versions, read_manifest, top_rows, widening_search
from rsretrieve.geo import GeoFilter
from rsretrieve.io import INDEX, atomic_dir, check_writable, read_pinned, write_json
from rsretrieve.locks import output_lock
from rsretrieve.registry import unknown_name_error

KIND = "captions"
MANIFEST = "manifest.json"
FAISS_INDEX = "index.faiss"
METADATA = "captions.parquet"
CAPTION_INDEX_KINDS = ("flat", "ivf", "hnsw")


@dataclasses.dataclass(frozen=True)
class CaptionIndexSettings:
    """``pq`` (sub-quantizers, e.g. 48) or ``sq8`` compress the vectors of ivf/hnsw indexes."""

    kind: str = "ivf"
    nlist: int | None = None
    nprobe: int = 32
    pq: int | None = None
    pq_bits: int = 8  # bits per PQ code (8: 256 centroids per sub-quantizer)
    sq8: bool = False
    hnsw_m: int = 32
    ef_search: int = 128
    train_size: int = 100_000

    def __post_init__(self) -> None:
        if self.kind not in CAPTION_INDEX_KINDS:
            raise unknown_name_error("index kind", self.kind, CAPTION_INDEX_KINDS)
        if self.pq and self.sq8:
            raise ConfigError("choose one of --pq and --sq8")
        if self.kind == "flat" and (self.pq or self.sq8):
            raise ConfigError("--pq/--sq8 need --index-type ivf or hnsw")
        if self.kind == "hnsw" and self.pq:
            raise ConfigError("--pq is for ivf indexes; use --sq8 with hnsw")

    def factory(self, rows: int) -> str:
        """FAISS index_factory string for a corpus of ``rows`` vectors."""
        pq = f"PQ{self.pq}" + ("" if self.pq_bits == 8 else f"x{self.pq_bits}")
        codec = pq if self.pq else "SQ8" if self.sq8 else "Flat"
        if self.kind == "flat":
            return "Flat"
        if self.kind == "hnsw":
            return f"HNSW{self.hnsw_m}" + ("_SQ8" if self.sq8 else "")
        return f"IVF{self.nlist or default_nlist(rows, self.train_size)},{codec}"

    def row_bytes(self, dim: int) -> int:
        """Bytes the index keeps per caption (an estimate, to check the disk before building)."""
        if self.kind == "flat":
            return 4 * dim
        codes = self.pq * self.pq_bits // 8 if self.pq else dim if self.sq8 else 4 * dim
        return codes + (8 * self.hnsw_m if self.kind == "hnsw" else 8)


def default_nlist(rows: int, train_size: int) -> int:
    """~4 sqrt(N) cells, with at least 39 training points per cell."""
    return max(1, min(int(4 * math.sqrt(rows)), min(rows, train_size) // 39))


def build_caption_index(
    dataset: Git10M,
    encoder: Encoder,
    out: Path,
    settings: CaptionIndexSettings = CaptionIndexSettings(),
    batch_size: int = 1024,
    force: bool = False,
    on_batch: Callable[[int], None] | None = None,
    lenient: bool = False,
) -> dict[str, Any]:
    """Embed every caption of ``dataset`` and write a caption index folder at ``out``;
    ``lenient`` skips rows whose caption is empty or not UTF-8 (counted in the manifest)."""
    import faiss
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    factory = settings.factory(dataset.rows)
    plan = {"dataset": dataset.fingerprint(), "encoder": encoder.describe(),
            "index": {**dataclasses.asdict(settings), "factory": factory}, "lenient": lenient}
    if out.exists() and not force:
        return _current(out, plan)
    started = time.perf_counter()
    index = faiss.index_factory(encoder.embed_dim, factory, faiss.METRIC_INNER_PRODUCT)
    pending: list[np.ndarray] = []
    count = 0
    skipped: list[dict[str, Any]] = []
    need = dataset.rows * (settings.row_bytes(encoder.embed_dim) + METADATA_ROW_BYTES)
    with atomic_dir(out, replace=force, what=INDEX, need=need) as tmp:
        writer: pq.ParquetWriter | None = None
        for batch in dataset.iter_captions(batch_size, lenient):
            skipped.extend(batch.skipped)
            if on_batch and batch.skipped:
                on_batch(len(batch.skipped))
            if not batch.caption:
                continue
            vectors = check_finite(np.ascontiguousarray(encoder.encode_texts(batch.caption), np.float32), encoder,
                                   batch.img_name, "caption of img_name")
            if index.is_trained:
                index.add(vectors)
            else:
                pending.append(vectors)
                if sum(len(p) for p in pending) >= min(settings.train_size, dataset.rows):
                    _train_and_flush(index, pending)
            table = pa.table({
                "img_name": batch.img_name, "caption": batch.caption, "quality": batch.quality,
                "resolution": batch.resolution, "zoom": batch.zoom, "lon": batch.lon, "lat": batch.lat,
            })
            writer = writer or pq.ParquetWriter(tmp / METADATA, table.schema)
            writer.write_table(table)
            count += len(batch.caption)
            if on_batch:
                on_batch(len(batch.caption))
        if writer is not None:
            writer.close()
        if count == 0:
            raise DataError(f"{dataset.root}: no caption left to index ({len(skipped)} rows skipped)")
        duplicates = _duplicate_names(tmp / METADATA)
        if not index.is_trained:
            _train_and_flush(index, pending)
        if index.ntotal != count:
            raise DataError(f"{dataset.root}: indexed {index.ntotal} vectors for {count} captions")
        faiss.write_index(index, str(tmp / FAISS_INDEX))
        manifest = {
            "format": "rsretrieve-index",
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "dataset": {"name": dataset.name, "path": str(dataset.root.resolve()), "fingerprint": plan["dataset"]},
            "encoder": encoder.describe(),
            "index": plan["index"],
            "lenient": lenient,
            "counts": {"total": count, "skipped": len(skipped), "duplicate_img_names": duplicates["count"]},
            "skipped_rows": {"count": len(skipped), "examples": skipped[:20]},
            "duplicate_img_names": duplicates,
            "bytes": (tmp / FAISS_INDEX).stat().st_size,
            "versions": package_versions(),
            "timings": {"build_s": round(time.perf_counter() - started, 3)},
        }
        write_json(tmp / MANIFEST, manifest)
    return manifest


def _current(out: Path, plan: Mapping[str, Any]) -> dict[str, Any]:
    """The caption index at ``out`` when it is what ``plan`` would build again (same captions,
    encoder, index settings and leniency): rerunning the command reuses it, as for image
    indexes; built differently, it is an error pointing at --force."""
    from rsretrieve.io import read_json_object

    existing = read_json_object(out / MANIFEST, DataError, "a caption index")
    held = {"dataset": (existing.get("dataset") or {}).get("fingerprint"), "encoder": existing.get("encoder"),
            "index": existing.get("index"), "lenient": existing.get("lenient")}
    changed = [name for name in plan if json.dumps(held[name], sort_keys=True) != json.dumps(plan[name], sort_keys=True)]
    if existing.get("kind") == KIND and not changed:
        return {**existing, "reused": True}
    raise DataError(f"{out} was built differently ({', '.join(changed) or 'another kind of index'} changed); "
                    "pass --force to replace it")


def _train_and_flush(index: Any, pending: list[np.ndarray]) -> None:
    if not pending:
        return
    sample = np.concatenate(pending)
    index.train(sample)
    index.add(sample)
    pending.clear()


@dataclasses.dataclass(frozen=True)
class CaptionFilter:
    """Keep captions with quality >= ``min_quality``, resolution in [min, max] metres, inside
    ``bbox`` = (lon_min, lat_min, lon_max, lat_max) (lon_min > lon_max is a box across the
    antimeridian: 170,-10,-170,10 holds longitudes 170..180 and -180..-170) and within
    ``radius_km`` of ``near`` = (lon, lat)."""

    min_quality: float | None = None
    min_resolution: float | None = None
    max_resolution: float | None = None
    bbox: tuple[float, float, float, float] | None = None
    near: tuple[float, float] | None = None
    radius_km: float | None = None

    def __post_init__(self) -> None:
        self.place()  # validates the geographic part
        low, high = self.min_resolution, self.max_resolution
        if low is not None and high is not None and low > high:
            raise ConfigError(f"--min-resolution {low} is above --max-resolution {high}: no caption can pass")

    @classmethod
    def parse(cls, min_quality: float | None = None, min_resolution: float | None = None,
              max_resolution: float | None = None, bbox: str | None = None, near: str | None = None,
              radius_km: float | None = None) -> "CaptionFilter":
        """The filter of the command-line options (``bbox`` as "lon_min,lat_min,lon_max,lat_max",
        ``near`` as "lon,lat")."""
        place = GeoFilter.parse(bbox, near, radius_km)
        return cls(min_quality, min_resolution, max_resolution, place.bbox, place.near, place.radius_km)

    def place(self) -> GeoFilter:
        return GeoFilter(self.bbox, self.near, self.radius_km)

    def active(self) -> bool:
        return any(v is not None for v in dataclasses.astuple(self))

    def mask(self, meta: Mapping[str, np.ndarray]) -> np.ndarray:
        keep = np.ones(len(meta["quality"]), bool)
        if self.min_quality is not None:
            keep &= meta["quality"] >= self.min_quality
        if self.min_resolution is not None:
            keep &= meta["resolution"] >= self.min_resolution
        if self.max_resolution is not None:
            keep &= meta["resolution"] <= self.max_resolution
        place = self.place()
        if place.active():
            keep &= place.mask(meta["lon"], meta["lat"])
        return keep


class CaptionIndex:
    """A caption index folder opened for search (metadata columns memory-mapped)."""

    def __init__(self, folder: Path) -> None:
        import faiss
        import pyarrow.parquet as pq

        self.path = Path(folder)

        def read(view: Path) -> tuple[dict[str, Any], Any, Any]:  # one build's files, even during --force
            manifest = read_manifest(self.path, view)
            if manifest.get("kind") != KIND:
                raise DataError(f"{self.path} is an image index; this needs a caption index (rsretrieve index --what captions)")
            return manifest, faiss.read_index(str(view / FAISS_INDEX)), pq.read_table(view / METADATA, memory_map=True)

        self.manifest, self.index, self.table = read_pinned(self.path, read)

    @property
    def approximate(self) -> bool:
        return self.manifest["index"].get("kind") != "flat"

    def search(self, vectors: np.ndarray, k: int, where: CaptionFilter = CaptionFilter()) -> list[list[dict[str, Any]]]:
        """Top-``k`` captions per query vector that pass ``where``; each hit is a metadata dict.

        A FAISS ID selector only restricts what an approximate index visits (IVF's probed
        cells, HNSW's graph walk), so a selective filter would miss passing captions. When at
        most ``EXACT_FILTER_ROWS`` captions pass, they are scored one by one (from their stored
        codes) instead, so every index kind returns the captions flat returns whenever k or
        fewer pass; above that, the search widens (nprobe, efSearch) until k pass."""
        import faiss

        if k < 1:
            raise ConfigError(f"-k must be at least 1, got {k}")
        vectors = np.ascontiguousarray(vectors, np.float32)
        selector = None
        if where.active():
            rows = np.flatnonzero(where.mask(self._filter_columns())).astype(np.int64)
            if rows.size == 0:
                return [[] for _ in range(len(vectors))]
            if self.approximate and rows.size <= EXACT_FILTER_ROWS:
                return self._hits(*top_rows(vectors, self._reconstruct(rows), rows, k))
            selector = faiss.IDSelectorBatch(rows)
        k = min(k, self.index.ntotal)
        return self._hits(*widening_search(self.index, self.manifest["index"], vectors, k, selector))

    def _filter_columns(self) -> dict[str, np.ndarray]:
        return {c: self.table.column(c).to_numpy() for c in ("quality", "resolution", "lon", "lat")}

    def empty_filter_note(self, where: CaptionFilter, hits: Sequence[Sequence[Any]]) -> str | None:
        """Why nothing came back, when no caption of the index passes ``where``: the ranges the
        index holds, so that a threshold outside them is seen for what it is. Looked at only
        when ``hits`` are all empty (the mask is not built twice for a search that found some)."""
        if not where.active() or any(hits):
            return None
        meta = self._filter_columns()
        if where.mask(meta).any() or not len(meta["quality"]):
            return None
        return (f"no caption of the index passes the filters: its quality runs from {meta['quality'].min():.3g} to "
                f"{meta['quality'].max():.3g}, its resolution from {meta['resolution'].min():.3g} to "
                f"{meta['resolution'].max():.3g} m, its lon from {meta['lon'].min():.3f} to {meta['lon'].max():.3f} "
                f"and its lat from {meta['lat'].min():.3f} to {meta['lat'].max():.3f}")

    def _reconstruct(self, rows: np.ndarray) -> np.ndarray:
        import faiss

        try:
            ivf = faiss.extract_index_ivf(self.index)
        except RuntimeError:
            ivf = None
        if ivf is not None and not ivf.direct_map.type:
            ivf.make_direct_map()  # IVF lists are not addressable by id until mapped (8 bytes a caption)
        return np.stack([self.index.reconstruct(int(r)) for r in rows]).astype(np.float32)

    def _hits(self, scores: np.ndarray, ids: np.ndarray) -> list[list[dict[str, Any]]]:
        results = []
        for row_scores, row_ids in zip(scores, ids):
            keep = [(float(s), int(i)) for s, i in zip(row_scores, row_ids) if i >= 0]
            rows = self.table.take([i for _, i in keep]).to_pylist() if keep else []
            results.append([{"score": s, "row": i, **r} for (s, i), r in zip(keep, rows)])
        return results


def search_captions(index: CaptionIndex, encoder: Encoder, texts: Sequence[str], k: int, where: CaptionFilter = CaptionFilter()) -> list[list[dict[str, Any]]]:
    """Text -> captions: the nearest captions to each text."""
    return index.search(encoder.encode_texts(list(texts)), k, where)


def describe_images(
    index: CaptionIndex, pipeline: ImagePipeline, batch: Batch, k: int, where: CaptionFilter = CaptionFilter()
) -> list[list[dict[str, Any]]]:
    """Image -> captions: describe images by their nearest captions (adapter + image side)."""
    return index.search(pipeline.embed(batch), k, where)


def is_caption_index(folder: Path) -> bool:
    """Whether ``folder`` holds a caption index (its manifest says so), not an image index."""
    from rsretrieve.io import read_json

    path = Path(folder) / MANIFEST
    if not path.is_file():
        return False
    manifest = read_json(path, DataError, "an index folder")
    return isinstance(manifest, dict) and manifest.get("kind") == KIND


METADATA_ROW_BYTES = 400  # img_name, caption (Git-10M's run to about 300 bytes), quality, location


def _duplicate_names(metadata: Path) -> dict[str, Any]:
    """img_name values that occur more than once (each row stays its own caption: Git-10M has
    no rule for merging them), counted in pyarrow so that 10M names cost no Python objects."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    counts = pc.value_counts(pq.read_table(metadata, columns=["img_name"]).column("img_name"))
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated):
        shown = ", ".join(f"'{v['values']}' ({v['counts']} rows)" for v in repeated.slice(0, 5).to_pylist())
        warn(f"{len(repeated)} img_name values occur more than once (e.g. {shown}); each row is indexed as its own caption")
    return {"count": len(repeated), "examples": [v["values"] for v in repeated.slice(0, 20).to_pylist()]}


def run_caption_job(
    job: IndexJob, out: Path, force: bool = False, device: str | None = None,
    on_start: Callable[[int], None] | None = None, on_batch: Callable[[int], None] | None = None,
    sharding: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """What ``index --what captions`` runs: open the Git-10M shards, load the encoder's text
    side and build the caption index at ``out``; returns its manifest. ``sharding`` maps
    the command's shard and cluster options to their values: any given is an error (a
    caption index is built in one process)."""
    from rsretrieve.datasets import open_dataset
    from rsretrieve.encoders import load_encoder
    from rsretrieve.zoo import resolve_model

    if job.dataset != "git10m" or not job.data:
        raise ConfigError("--what captions indexes Git-10M: give --dataset git10m --data SHARDS")
    given = [name for name, value in (sharding or {}).items() if value is not None]
    if given:
        raise ConfigError(foreign_message(given, "captions"))
    check_writable(Path(out), folder=True)  # before the shards are read or the encoder loads
    with output_lock(Path(out)):
        dataset = open_dataset("git10m", Path(job.data), split=job.split)
        settings = CaptionIndexSettings(
            kind=job.index if job.index != "flat" or job.pq or job.sq8 else "flat", nlist=job.nlist,
            nprobe=job.nprobe, pq=job.pq, sq8=bool(job.sq8), hnsw_m=job.hnsw_m, ef_search=job.ef_search,
            train_size=job.train_size,
        )
        encoder = load_encoder(resolve_model(job.model, job.pretrained, job.seed), device)
        if on_start:
            on_start(dataset.rows)
        return build_caption_index(dataset, encoder, out, settings, 1024 if job.batch_size is None else job.batch_size,
                                   force, on_batch, lenient=job.strict is not True)


@dataclasses.dataclass(frozen=True)
class CaptionSearch:
    """Hits per query, and what the index was (an approximate one is worth a note)."""

    hits: list[list[dict[str, Any]]]
    factory: str
    approximate: bool
    empty_filter: str | None = None  # why no caption passes the filters, when none does


def search_caption_folder(
    folder: Path, texts: Sequence[str], k: int, where: CaptionFilter = CaptionFilter(),
    requested: EncoderSpec | None = None, device: str | None = None, nprobe: int | None = None,
    ef_search: int | None = None,
) -> CaptionSearch:
    """Text -> captions on the caption index at ``folder``, with the encoder it was built with
    (and ``nprobe`` / ``ef_search`` in place of the built ones, when given)."""
    from rsretrieve.index import override_search
    from rsretrieve.search import encoder_for_manifest

    index = CaptionIndex(folder)
    index.manifest["index"] = override_search(index.manifest["index"], Path(folder), nprobe, ef_search)
    encoder = encoder_for_manifest(index.manifest, Path(folder), requested, device)
    hits = search_captions(index, encoder, texts, k, where)
    return CaptionSearch(hits, index.manifest["index"]["factory"], index.approximate, index.empty_filter_note(where, hits))


def write_caption_hits(path: Path, query_ids: Sequence[str], hits: Sequence[Sequence[Mapping[str, Any]]]) -> int:
    """Caption hits as JSON lines (``query_id`` + the hit's metadata), atomically; returns the count."""
    import json

    from rsretrieve.io import write_text

    lines = [json.dumps({"query_id": q, **hit}) for q, found in zip(query_ids, hits) for hit in found]
    write_text(Path(path), "\n".join(lines) + "\n")
    return len(lines)


def describe_key(
    folder: Path, dataset: str, data: Path, key: str, k: int, where: CaptionFilter = CaptionFilter(),
    requested: EncoderSpec | None = None, device: str | None = None,
) -> tuple[str, list[dict[str, Any]], str | None]:
    """Image ``key`` of the dataset at ``data`` (format ``dataset``, any split) -> its nearest
    captions, embedded with the image side of the encoder the caption index was built with.
    Returns the image's sensor, the hits and, when no caption passes ``where``, why."""
    from rsretrieve.datasets import open_dataset
    from rsretrieve.embeddings import build_pipeline
    from rsretrieve.search import check_weights, manifest_spec

    index = CaptionIndex(folder)
    batch = open_dataset(dataset, Path(data)).read_batch([key])
    pipeline = build_pipeline(manifest_spec(index.manifest, Path(folder), requested), sensors=(batch.sensor,), device=device)
    check_weights(index.manifest, pipeline.encoder, Path(folder))
    hits = describe_images(index, pipeline, batch, k, where)[0]
    return batch.sensor, hits, index.empty_filter_note(where, [hits])
