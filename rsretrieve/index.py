"""Index folders: embeddings (npy), ids (parquet), a FAISS index and a manifest (JSON).

Layout of an index folder::

    manifest.json     encoder, adapters, dataset fingerprint, counts, versions, timings
    embeddings.npy    (N, D) float32, L2-normalised, row i belongs to ids row i
    ids.parquet       key, sensor, labels, lon, lat (the patch centre in degrees; null: unknown)
    index.faiss       FAISS index over the rows (faiss' own format, no pickle)
"""

from __future__ import annotations

import hashlib
import math
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve import __version__
from rsretrieve.datasets.base import PatchDataset
from rsretrieve.embeddings import Embedded, ImagePipeline, embed_dataset, plan_id
from rsretrieve.errors import ConfigError, DataError, first_line
from rsretrieve.io import (INDEX, atomic_dir, check_replaceable, check_space, check_writable, clean_leftovers, read_json,
                           read_pinned, sha256_file, write_json)
from rsretrieve.registry import unknown_name_error

MANIFEST = "manifest.json"
EMBEDDINGS = "embeddings.npy"
IDS = "ids.parquet"
FAISS_INDEX = "index.faiss"
FORMAT_VERSION = 1
INDEX_KINDS = ("flat", "ivf", "hnsw")


@dataclass(frozen=True)
class IndexSettings:
    """FAISS index choice. ``flat`` is exact inner product; ivf/hnsw are approximate."""

    kind: str = "flat"
    nlist: int | None = None  # ivf cells; default ~4 sqrt(N), at least 39 points per cell
    nprobe: int = 16  # ivf cells visited per query
    hnsw_m: int = 32
    ef_search: int = 128

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise unknown_name_error("index kind", self.kind, INDEX_KINDS)


@dataclass(frozen=True)
class _OpenFile:
    """A file kept open for later reads (the ids table of the build that was loaded); a copy
    of the index shares it."""

    file: Any

    def __deepcopy__(self, memo: dict[int, Any]) -> _OpenFile:
        return self


@dataclass
class LoadedIndex:
    path: Path
    manifest: dict[str, Any]
    keys: list[str]
    sensors: list[str]
    embeddings: np.ndarray
    faiss_index: Any = field(repr=False)
    _labels: list[list[str]] | None = field(default=None, repr=False)
    _locations: np.ndarray | None = field(default=None, repr=False)
    _ids: _OpenFile | None = field(default=None, repr=False)  # the ids table of this build (None: read by name)

    def _ids_source(self) -> Any:
        return self.path / IDS if self._ids is None else self._ids.file

    @property
    def labels(self) -> list[list[str]]:
        """Labels of every row, read on first use (they serve display, not search)."""
        if self._labels is None:
            import pyarrow.parquet as pq

            self._labels = pq.read_table(self._ids_source(), columns=["labels"]).column("labels").to_pylist()
        return self._labels

    @property
    def locations(self) -> np.ndarray:
        """(N, 2) centre lon/lat of every row, NaN where unknown; an index written before
        rsretrieve stored locations is an error that says to rebuild it."""
        if self._locations is None:
            import pyarrow.parquet as pq

            if not {"lon", "lat"} <= set(pq.read_schema(self._ids_source()).names):
                raise DataError(f"index {self.path} holds no patch locations (built before rsretrieve stored them); "
                                "rebuild it with `rsretrieve index ... --force`")
            table = pq.read_table(self._ids_source(), columns=["lon", "lat"])
            self._locations = np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in ("lon", "lat")],
                                       axis=1).astype(np.float64)
        return self._locations

    def sensor_rows(self, sensor: str) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.sensors) == sensor).astype(np.int64)


def package_versions() -> dict[str, str]:
    out = {"rsretrieve": __version__, "python": platform.python_version()}
    for name in ("torch", "open_clip_torch", "faiss-cpu", "numpy", "h5py", "ranx"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_faiss(embeddings: np.ndarray, settings: IndexSettings) -> Any:
    import faiss

    n, dim = embeddings.shape
    if settings.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif settings.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    else:
        nlist = settings.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        if nlist > n:
            raise ConfigError(f"--nlist {nlist} exceeds the corpus size {n}")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        train = embeddings[rng.permutation(n)[: 256 * nlist]]
        index.train(train)
    index.add(embeddings)
    return index


def search_params(settings: Mapping[str, Any], selector: Any, k: int) -> Any:
    """FAISS search parameters for a manifest's index settings, restricted by ``selector``."""
    import faiss

    if settings["kind"] == "ivf":
        return faiss.SearchParametersIVF(sel=selector, nprobe=settings["nprobe"])
    if settings["kind"] == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=max(settings["ef_search"], k))
    return faiss.SearchParameters(sel=selector) if selector is not None else None


def override_search(settings: Mapping[str, Any], where: Path, nprobe: int | None = None,
                    ef_search: int | None = None) -> dict[str, Any]:
    """An index's search settings with ``search --nprobe`` (IVF) or ``--ef-search`` (HNSW)
    in place of the built ones; an override that the index's kind has no use for is an error."""
    out = dict(settings)
    for option, key, kind, value in (("--nprobe", "nprobe", "ivf", nprobe), ("--ef-search", "ef_search", "hnsw", ef_search)):
        if value is None:
            continue
        if settings.get("kind") != kind:
            raise ConfigError(f"{option} applies to {kind} indexes; {where} is a {settings.get('kind')} index")
        if value < 1:
            raise ConfigError(f"{option} must be at least 1, got {value}")
        out[key] = value
    return out


def widen(settings: Mapping[str, Any], cap: int) -> dict[str, Any]:
    """The same search settings visiting four times more of an IVF or HNSW index (at most
    ``cap`` cells or candidates): a filtered search that found fewer than k tries again."""
    wider = dict(settings)
    key = {"ivf": "nprobe", "hnsw": "ef_search"}.get(str(settings.get("kind")))
    if key is not None:
        wider[key] = min(int(settings[key]) * 4, cap)
    return wider


EXACT_FILTER_ROWS = 50_000  # filtered rows that approximate indexes score one by one, not through a selector


def top_rows(vectors: np.ndarray, stored: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top ``k`` of ``rows`` (whose vectors are ``stored``) for each query, best first."""
    scores = vectors @ stored.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), rows[top]


def widening_search(faiss_index: Any, settings: Mapping[str, Any], vectors: np.ndarray, k: int,
                    selector: Any) -> tuple[np.ndarray, np.ndarray]:
    """FAISS search restricted by ``selector``. A selector only restricts what IVF and HNSW
    visit (the probed cells, the graph walk): while fewer than ``k`` pass, search again
    visiting four times more, up to the whole index (flat is exact at once)."""
    while True:
        scores, found = faiss_index.search(vectors, k, params=search_params(settings, selector, k))
        if selector is None or (found >= 0).all():
            return scores, found
        wider = widen(settings, index_cells(faiss_index))
        if wider == settings:
            return scores, found
        settings = wider


def index_cells(index: Any) -> int:
    """IVF cells of a FAISS index (the most nprobe can be), or its size for other kinds."""
    import faiss

    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        return int(index.ntotal)


ROW_OVERHEAD = 160  # bytes a row costs besides its vector: key, sensor, labels, lon/lat, batch bookkeeping


def folder_bytes(rows: int, dim: int, settings: IndexSettings) -> int:
    """Bytes of an index folder (an estimate): embeddings.npy and the FAISS file (flat and IVF
    keep every vector, HNSW adds its graph links), and the ids table."""
    links = 8 * settings.hnsw_m if settings.kind == "hnsw" else 8 if settings.kind == "ivf" else 0
    return rows * (2 * 4 * dim + links + ROW_OVERHEAD)


def space_needed(rows: int, dim: int, settings: IndexSettings, work_dir: Path | None = None) -> int:
    """Bytes an index build writes at its peak (an estimate): the batches still to save, then,
    beside them, the index folder."""
    saved = sum(p.stat().st_size for p in work_dir.glob("batch-*.npz")) if work_dir is not None and work_dir.is_dir() else 0
    return max(0, rows * (4 * dim + ROW_OVERHEAD) - saved) + folder_bytes(rows, dim, settings)


def _work_dir(out: Path) -> Path:
    return out.with_name(f"{out.name}.partial")


def build_index(
    dataset: PatchDataset,
    pipeline: ImagePipeline,
    out: Path,
    batch_size: int = 32,
    settings: IndexSettings = IndexSettings(),
    force: bool = False,
    on_batch: Callable[[int], None] | None = None,
    verify: bool = False,
    readers: int = 1,
    replace_stale: bool = False,
) -> dict[str, Any]:
    """Embed ``dataset`` and write an index folder at ``out``; returns its manifest (with
    ``reused: True`` when the existing folder was kept).

    An existing folder built from the same plan (dataset fingerprint, filters, encoder
    weights, adapters, batch size, index settings) is reused as it is; with ``verify`` the
    shards' bytes must also hash as they did; ``replace_stale`` rebuilds one that is not
    current instead of refusing it. ``readers`` processes read the data; the
    result is the same bytes for any number. Any other existing folder needs ``force``, and
    ``force`` replaces only an index rsretrieve wrote. Nothing is written at ``out`` until all
    is done.
    """
    out = Path(out)
    clean_leftovers(out)
    plan = plan_id(dataset, pipeline, batch_size)
    content = dataset.content_digest() if verify else None
    check_writable(out, folder=True)
    if out.exists() and not force:
        existing = read_manifest(out)
        differences = _differences(existing, plan, settings, dataset, pipeline, batch_size, verify, content)
        damage = damaged_files(out, existing, verify)
        if damage and not differences:
            if not replace_stale:
                raise damaged_error(out, damage)
            differences = damage  # the demo's own index: rebuilt
        if not differences:
            return {**existing, "reused": True}
        if not replace_stale:
            raise DataError(f"{out} was built differently ({'; '.join(differences)}); pass --force to replace it")
        force = True  # an index of rsretrieve's own (the demo's), stale: rebuilt
    if force:
        check_replaceable(out, INDEX)
    check_space(out, space_needed(len(dataset.samples), pipeline.encoder.embed_dim, settings, _work_dir(out)), "the index")
    started = time.perf_counter()
    embedded = embed_dataset(dataset, pipeline, _work_dir(out), batch_size, plan, on_batch, readers)
    embed_seconds = time.perf_counter() - started
    started = time.perf_counter()
    index = build_faiss(embedded.embeddings, settings)
    manifest = _manifest(dataset, pipeline, embedded, settings, batch_size, plan)
    if content is not None:
        manifest["dataset"]["content_sha256"] = content
    manifest["timings"] = {"embed_s": round(embed_seconds, 3), "build_s": round(time.perf_counter() - started, 3)}
    labels = {s.key: s.labels for s in dataset.samples}  # the samples' own tuples, not copies
    _write_folder(out, embedded.keys, embedded.sensors, [labels[k] for k in embedded.keys],
                  embedded.embeddings, index, manifest, force, embedded.locations)
    shutil.rmtree(_work_dir(out), ignore_errors=True)
    return manifest


def damaged_files(folder: Path, manifest: Mapping[str, Any], hashes: bool = False) -> list[str]:
    """What is wrong with the files of an index folder that is about to be reused: sizes against
    the manifest's record, the embeddings' npy header, the ids table's parquet footer, FAISS's
    header; with ``hashes`` (``--verify``) their SHA-256 too. Empty: sound."""
    problems = []
    recorded = manifest.get("files") or {}
    for name in (EMBEDDINGS, IDS, FAISS_INDEX):
        path = Path(folder) / name
        if not path.is_file():
            problems.append(f"{name} is missing")
            continue
        size = path.stat().st_size
        if name in recorded and size != recorded[name].get("bytes"):
            problems.append(f"{name} is {size} bytes, the manifest records {recorded[name].get('bytes')}")
        elif hashes and name in recorded and sha256_file(path) != recorded[name].get("sha256"):
            problems.append(f"{name} does not hash as recorded (--verify)")
    if problems:
        return problems
    try:
        rows = np.load(Path(folder) / EMBEDDINGS, mmap_mode="r", allow_pickle=False).shape[0]
    except (OSError, ValueError) as exc:
        return [f"{EMBEDDINGS} is not a readable npy file ({first_line(exc)})"]
    try:
        import pyarrow.parquet as pq

        ids = pq.ParquetFile(Path(folder) / IDS).metadata.num_rows
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a damaged footer
        return [f"{IDS} is not a readable parquet file ({first_line(exc)})"]
    with open(Path(folder) / FAISS_INDEX, "rb") as handle:
        fourcc = handle.read(4)
    if len(fourcc) < 4 or not fourcc.startswith(b"I"):  # every FAISS index file opens with a fourcc I...
        problems.append(f"{FAISS_INDEX} does not start with a FAISS header")
    listed = manifest.get("counts", {}).get("total", rows)
    if rows != ids or rows != listed:
        problems.append(f"{EMBEDDINGS} holds {rows} rows, {IDS} {ids}, the manifest {listed}")
    return problems


def damaged_error(folder: Path, damage: Sequence[str]) -> DataError:
    return DataError(f"{folder} was built with these options but is damaged ({'; '.join(damage)}); pass --force to rebuild it")


def _differences(
    existing: Mapping[str, Any], plan: str, settings: IndexSettings, dataset: Any, pipeline: ImagePipeline,
    batch_size: int, verify: bool, content: str | None,
) -> list[str]:
    """What differs between an existing index and the one asked for (empty: reuse it)."""
    out = []
    if existing.get("plan_id") != plan:
        old = existing.get("dataset", {})
        if old.get("fingerprint") != dataset.fingerprint():
            out.append("the dataset changed: a shard's size or modification time, or the main or metadata file")
        for name in ("split", "limit", "strict"):
            if old.get(name) != getattr(dataset, name):
                out.append(f"dataset {name} {old.get(name)!r} -> {getattr(dataset, name)!r}")
        if old.get("sensors") != list(dataset.sensors):
            out.append(f"sensors {old.get('sensors')} -> {list(dataset.sensors)}")
        if (old.get("shard") or None) != (list(dataset.shard) if dataset.shard else None):
            out.append("shard")
        described = pipeline.describe()
        if existing.get("encoder") != described["encoder"]:
            out.append(f"encoder {existing.get('encoder', {}).get('model')} -> {described['encoder'].get('model')}"
                       if existing.get("encoder", {}).get("model") != described["encoder"].get("model")
                       else "encoder weights or options")
        if existing.get("precision", "fp32") != described["precision"]:
            out.append(f"precision {existing.get('precision', 'fp32')} -> {described['precision']}")
        if existing.get("adapters") != described["adapters"]:
            out.append(f"adapters {existing.get('adapters')} -> {described['adapters']}")
        if existing.get("batch_size") != batch_size:
            out.append(f"batch size {existing.get('batch_size')} -> {batch_size}")
        out = out or ["its build plan"]
    if existing.get("index") != asdict(settings):
        out.append(f"index settings {existing.get('index')} -> {asdict(settings)}")
    if verify and existing.get("dataset", {}).get("content_sha256") != content:
        out.append("shard contents (--verify)" if existing.get("dataset", {}).get("content_sha256")
                   else "it was built without --verify, so its shard contents cannot be compared")
    return out


def _manifest(
    dataset: PatchDataset,
    pipeline: ImagePipeline,
    embedded: Embedded,
    settings: IndexSettings,
    batch_size: int,
    plan: str,
) -> dict[str, Any]:
    counts = {"total": len(embedded.keys)}
    for sensor in dataset.sensors:
        counts[sensor] = embedded.sensors.count(sensor)
    return {
        "format": "rsretrieve-index",
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "plan_id": plan,
        "dataset": {
            "name": dataset.name,
            "path": str(dataset.root.resolve()),
            "fingerprint": dataset.fingerprint(),
            "split": dataset.split,
            "sensors": list(dataset.sensors),
            "limit": dataset.limit,
            "strict": dataset.strict,
            "shard": list(dataset.shard) if dataset.shard else None,
        },
        **pipeline.describe(),
        "index": asdict(settings),
        "batch_size": batch_size,
        "embed_dim": int(embedded.embeddings.shape[1]),
        "counts": counts,
        "locations": location_counts(embedded.locations),
        "nonfinite_pixels": embedded.nonfinite_pixels,
        **nonfinite_report(embedded.nonfinite_by_key),
        "versions": package_versions(),
    }


NONFINITE_SHOWN = 10


def location_counts(locations: np.ndarray) -> dict[str, int]:
    """How many rows have a known centre lon/lat, and how many not (null in ids.parquet)."""
    known = int(np.isfinite(locations).all(axis=1).sum()) if len(locations) else 0
    return {"known": known, "unknown": int(len(locations)) - known}


def nonfinite_report(by_key: Mapping[str, int]) -> dict[str, Any]:
    """The samples most affected by NaN/inf pixels, and those with no finite pixel at all
    (a patch of fill values: it is indexed, but it shows nothing)."""
    from rsretrieve.datasets.crisislandmark import PATCH_SIZE
    from rsretrieve.datasets.sensors import BANDS, sensor_of_key

    def pixels(key: str) -> int:
        try:
            return len(BANDS[sensor_of_key(key)]) * PATCH_SIZE * PATCH_SIZE
        except DataError:
            return -1

    worst = sorted(by_key.items(), key=lambda kv: (-kv[1], kv[0]))[:NONFINITE_SHOWN]
    return {
        "nonfinite_keys": dict(worst),
        "all_nonfinite_keys": sorted(k for k, n in by_key.items() if n == pixels(k)),
    }


def _write_folder(
    out: Path, keys: list[str], sensors: list[str], labels: Sequence[Sequence[str]], embeddings: np.ndarray,
    index: Any, manifest: dict[str, Any], force: bool, locations: np.ndarray | None = None,
) -> None:
    """Write the four files of an index folder (ids.parquet with each row's centre lon/lat,
    null where unknown); the folder appears only when complete."""
    from rsretrieve.geo import location_columns

    import faiss
    import pyarrow as pa
    import pyarrow.parquet as pq

    need = folder_bytes(len(keys), embeddings.shape[1], IndexSettings(**manifest["index"]))
    with atomic_dir(out, replace=force, what=INDEX, need=need) as tmp:
        np.save(tmp / EMBEDDINGS, embeddings, allow_pickle=False)
        if locations is None:
            locations = np.full((len(keys), 2), np.nan)
        table = pa.table({"key": keys, "sensor": sensors, "labels": pa.array(labels, pa.list_(pa.string())),
                          **location_columns(locations[:, 0], locations[:, 1])})
        pq.write_table(table, tmp / IDS)
        faiss.write_index(index, str(tmp / FAISS_INDEX))
        manifest["files"] = {name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256_file(tmp / name)}
                             for name in (EMBEDDINGS, IDS, FAISS_INDEX)}
        write_json(tmp / MANIFEST, manifest)


def read_manifest(folder: Path, view: Path | None = None) -> dict[str, Any]:
    """The manifest of the index at ``folder`` (read through ``view``, its pinned folder, when given)."""
    path = Path(folder) / MANIFEST
    manifest = read_json(path, DataError, "an index folder", source=None if view is None else Path(view) / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != "rsretrieve-index":
        raise DataError(f"{path}: not an rsretrieve index manifest (field 'format')")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: format_version {manifest.get('format_version')} is not supported")
    return manifest


def load_index(folder: Path) -> LoadedIndex:
    """The index at ``folder``, every file from one build of it (``io.read_pinned``): a search
    that runs while ``index --force`` rebuilds the folder sees the old index or the new one,
    whole, never one build's manifest beside the other's vectors."""
    folder = Path(folder)
    return read_pinned(folder, lambda view: _load_index(folder, view))


def _load_index(folder: Path, view: Path) -> LoadedIndex:
    import faiss
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = read_manifest(folder, view)
    if manifest.get("kind") == "captions":  # the twin of CaptionIndex's check, the other way round
        raise DataError(f"{folder} is a caption index; this needs an image index (rsretrieve index without --what captions)")
    for name in (EMBEDDINGS, IDS, FAISS_INDEX):
        if not (view / name).is_file():
            raise DataError(f"index folder {folder}: {name} is missing")
    damaged = "is damaged ({}); rebuild the index with `rsretrieve index ... --force`"
    try:
        ids = pa.memory_map(str(view / IDS))  # kept open: labels and locations are read from this file later
        table = pq.read_table(ids, columns=["key", "sensor"])
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad files
        raise DataError(f"{folder / IDS} " + damaged.format(first_line(exc))) from None
    try:
        embeddings = np.load(view / EMBEDDINGS, mmap_mode="r", allow_pickle=False)  # read on demand: search uses FAISS
    except (ValueError, EOFError) as exc:
        raise DataError(f"{folder / EMBEDDINGS} " + damaged.format(first_line(exc))) from None
    try:
        index = faiss.read_index(str(view / FAISS_INDEX))
    except RuntimeError as exc:
        if not (view / FAISS_INDEX).is_file():
            raise FileNotFoundError(folder / FAISS_INDEX) from None
        raise DataError(f"{folder / FAISS_INDEX} " + damaged.format(first_line(exc))) from None
    if not (table.num_rows == embeddings.shape[0] == index.ntotal):
        raise DataError(
            f"index folder {folder}: row counts disagree (ids {table.num_rows}, "
            f"embeddings {embeddings.shape[0]}, faiss {index.ntotal}); rebuild it with --force"
        )
    widths = {"manifest": manifest.get("embed_dim"), "embeddings": embeddings.shape[1] if embeddings.ndim == 2 else None,
              "faiss": index.d}
    if len(set(widths.values())) != 1:
        raise DataError(f"index folder {folder}: vector widths disagree ({', '.join(f'{k} {v}' for k, v in widths.items())}); "
                        "rebuild it with --force")
    recorded = manifest.get("files") or {}
    for name in (EMBEDDINGS, IDS, FAISS_INDEX):
        size = (view / name).stat().st_size
        if name in recorded and recorded[name].get("bytes") not in (None, size):
            raise DataError(f"index folder {folder}: {name} is {size} bytes, the manifest records "
                            f"{recorded[name].get('bytes')}; rebuild it with --force")
    sensors = table.column("sensor").dictionary_encode().combine_chunks()
    names = sensors.dictionary.to_pylist()  # one string object per sensor, shared by all rows
    return LoadedIndex(
        path=folder,
        manifest=manifest,
        keys=table.column("key").to_pylist(),
        sensors=[names[i] for i in sensors.indices.to_numpy()],
        embeddings=embeddings,
        faiss_index=index,
        _ids=_OpenFile(ids),
    )


def merged_plan_id(plans: list[str]) -> str:
    """The plan id of an index merged from shards of these plan ids (in shard order)."""
    return hashlib.sha256("".join(plans).encode()).hexdigest()


SHARED_FIELDS = ("encoder", "adapters", "index", "batch_size", "embed_dim")
SHARED_DATASET_FIELDS = ("name", "fingerprint", "split", "sensors", "limit", "strict")


def merge_indexes(folders: list[Path], out: Path, force: bool = False) -> dict[str, Any]:
    """Combine the shard folders of one sharded job into one index folder at ``out``.

    Every shard must come from the same dataset, filters, encoder weights, adapters and index
    settings, and shards 0..N-1 must all be there once; rows keep shard order.
    """
    if not folders:
        raise ConfigError("merge needs at least one shard folder")
    check_writable(Path(out), folder=True)  # before any shard is read
    if Path(out).exists() and not force:
        raise DataError(f"{out} already exists; pass --force to replace it")
    shards = [load_index(f) for f in folders]
    first = shards[0].manifest
    for shard in shards[1:]:
        for name in SHARED_FIELDS:
            if shard.manifest.get(name) != first.get(name):
                raise DataError(f"cannot merge {shard.path} with {shards[0].path}: their '{name}' differ")
        for name in SHARED_DATASET_FIELDS:
            if shard.manifest["dataset"].get(name) != first["dataset"].get(name):
                raise DataError(f"cannot merge {shard.path} with {shards[0].path}: dataset '{name}' differs")
    positions = [s.manifest["dataset"].get("shard") for s in shards]
    if any(p is None for p in positions):
        raise DataError(f"{shards[positions.index(None)].path} is not a shard (index --shard I/N)")
    count = positions[0][1]
    if sorted(p[0] for p in positions) != list(range(count)) or any(p[1] != count for p in positions):
        got = ", ".join(f"{i}/{n}" for i, n in positions)
        raise DataError(f"merge needs shards 0..{count - 1} of {count} exactly once; got {got}")
    shards.sort(key=lambda s: s.manifest["dataset"]["shard"][0])
    keys = [k for s in shards for k in s.keys]
    if len(set(keys)) != len(keys):
        raise DataError("shards overlap: some sample keys appear twice")
    embeddings = np.concatenate([s.embeddings for s in shards])
    locations = np.concatenate([s.locations for s in shards])
    started = time.perf_counter()
    index = build_faiss(embeddings, IndexSettings(**first["index"]))
    counts: dict[str, int] = {"total": len(keys)}
    for s in shards:
        for sensor, n in s.manifest["counts"].items():
            if sensor != "total":
                counts[sensor] = counts.get(sensor, 0) + n
    manifest = {
        **first,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "plan_id": merged_plan_id([s.manifest["plan_id"] for s in shards]),
        "dataset": {**first["dataset"], "shard": None},
        "counts": counts,
        "locations": location_counts(locations),
        "nonfinite_pixels": sum(s.manifest["nonfinite_pixels"] for s in shards),
        "merged_from": [str(s.path.resolve()) for s in shards],
        "versions": package_versions(),
        "timings": {"embed_s": round(sum(s.manifest["timings"]["embed_s"] for s in shards), 3),
                    "build_s": round(time.perf_counter() - started, 3)},
    }
    _write_folder(Path(out), keys, [x for s in shards for x in s.sensors], [x for s in shards for x in s.labels],
                  embeddings, index, manifest, force, locations)
    return manifest
