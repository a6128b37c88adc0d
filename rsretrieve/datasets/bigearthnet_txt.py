"""BigEarthNet.txt as a text-to-image retrieval benchmark, with BigEarthNet v2 patches.

``build_task`` turns the annotation parquet (ID, s1_name, patch_id, input, output, type,
category, split, latitude, longitude, country, season, climate_zone) into a task folder:

    queries.jsonl     caption queries (a captioning row's reference caption; its S1/S2 pair
                      is relevant) and label queries (a class from presence questions; every
                      patch answered "yes" is relevant), each with country/season/climate_zone
    qrels/test.tsv    BEIR TSV
    patches.parquet   the corpus: patch_id (S2), s1_name (S1), labels, country, season, climate_zone
    task.json         where the images are and in which layout

Images come from the layout the dataset card recommends, a rico-hdl LMDB (key: patch name;
value: safetensors bytes with one 2-D array per band), or from plain GeoTIFF folders
(``<root>/**/<patch>/<patch>_<band>.tif``). 20 m and 60 m Sentinel-2 bands are upsampled to
the 120 x 120 grid of the 10 m bands by pixel repetition.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.datasets.base import Batch, PatchDataset, SampleInfo
from rsretrieve.datasets.sensors import BANDS, SENSORS, Sensor
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.io import atomic_dir, check_writable, read_json_object, write_json

COLUMNS = ("ID", "s1_name", "patch_id", "input", "output", "type", "category", "split",
           "latitude", "longitude", "country", "season", "climate_zone")
SPLITS = ("train", "validation", "test", "bench")
GROUP_FIELDS = ("country", "season", "climate_zone")
PATCH = 120
IMAGE_FORMATS = ("lmdb", "geotiff")
BEN19_CLASSES = (
    "Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops", "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
    "Natural grassland and sparsely vegetated areas", "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub", "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands",
    "Inland waters", "Marine waters",
)
_YES = re.compile(r"^\s*yes\b", re.IGNORECASE)


def read_annotations(path: Path, splits: Sequence[str]) -> Any:
    """The rows of ``splits`` (a pyarrow Table), columns validated."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"BigEarthNet.txt parquet {path} not found")
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ConfigError(f"unknown split(s) {', '.join(unknown)}; BigEarthNet.txt has {', '.join(SPLITS)}")
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad files
        raise DataError(f"{path}: cannot read parquet: {exc}") from exc
    missing = [c for c in COLUMNS if c not in schema.names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    return pq.read_table(path, columns=list(COLUMNS), filters=[("split", "in", list(splits))])


def presence_class(question: str) -> str | None:
    """The BigEarthNet-19 class a presence question asks about (longest name that matches)."""
    lowered = question.lower()
    found = [c for c in BEN19_CLASSES if c.lower() in lowered]
    return max(found, key=len) if found else None


def build_task(parquet: Path, images: Path, image_format: str, out: Path, splits: Sequence[str] = ("bench",),
               overwrite: bool = False) -> dict[str, Any]:
    """Write a retrieval task folder from BigEarthNet.txt; returns counts."""
    if image_format not in IMAGE_FORMATS:
        raise ConfigError(f"--image-format must be one of {', '.join(IMAGE_FORMATS)}, got '{image_format}'")
    if not Path(images).exists():
        raise DataError(f"image store {images} not found")
    out = Path(out)
    check_writable(out, folder=True)  # before the annotations are read
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; pass --force to replace it")
    rows = read_annotations(parquet, splits).to_pylist()
    if not rows:
        raise DataError(f"{parquet}: no rows in split(s) {', '.join(splits)}")
    patches: dict[str, dict[str, Any]] = {}
    queries: list[dict[str, Any]] = []
    qrels: list[tuple[str, str, int]] = []
    presence: dict[str, set[str]] = {}
    unparsed = 0
    for row in rows:
        patch = patches.setdefault(row["patch_id"], {
            "patch_id": row["patch_id"], "s1_name": row["s1_name"], "labels": set(),
            **{f: row[f] for f in GROUP_FIELDS}, "latitude": row["latitude"], "longitude": row["longitude"],
        })
        kind, category = str(row["type"]).lower(), str(row["category"]).lower()
        if kind == "captioning":
            qid = f"cap-{row['ID']}"
            queries.append({"_id": qid, "text": row["output"], "kind": "caption", **{f: row[f] for f in GROUP_FIELDS}})
            qrels += [(qid, row["patch_id"], 1), (qid, row["s1_name"], 1)]
        elif kind == "binary" and category in ("pr", "presence"):
            cls = presence_class(row["input"])
            if cls is None:
                unparsed += 1
            elif _YES.match(str(row["output"])):
                presence.setdefault(cls, set()).add(row["patch_id"])
                patch["labels"].add(cls)
    for cls, ids in sorted(presence.items()):
        qid = "label-" + re.sub(r"[^a-z0-9]+", "-", cls.lower()).strip("-")
        queries.append({"_id": qid, "text": cls, "kind": "label", **{f: None for f in GROUP_FIELDS}})
        for pid in sorted(ids):
            qrels += [(qid, pid, 1), (qid, patches[pid]["s1_name"], 1)]
    _check_store(Path(images), image_format, next(iter(patches.values())))
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_dir(out, replace=overwrite, what="a task folder of rsretrieve bigearthnet-task") as tmp:
        with open(tmp / "queries.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(q) + "\n" for q in queries)
        (tmp / "qrels").mkdir()
        lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{r}" for q, d, r in qrels)]
        (tmp / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        table = pa.table({
            "patch_id": [p["patch_id"] for p in patches.values()],
            "s1_name": [p["s1_name"] for p in patches.values()],
            "labels": pa.array([sorted(p["labels"]) for p in patches.values()], pa.list_(pa.string())),
            **{f: [p[f] for p in patches.values()] for f in (*GROUP_FIELDS, "latitude", "longitude")},
        })
        pq.write_table(table, tmp / "patches.parquet")
        write_json(tmp / "task.json", {"images": str(Path(images).resolve()), "format": image_format,
                                       "source": str(Path(parquet).resolve()), "splits": list(splits)})
    return {"queries": len(queries), "caption_queries": sum(q["kind"] == "caption" for q in queries),
            "label_queries": len(presence), "patches": len(patches), "unparsed_presence_questions": unparsed}


class BigEarthNetTask(PatchDataset):
    """The corpus of a task folder: each patch as a Sentinel-2 sample and a Sentinel-1 sample.

    A task folder holds one corpus, split ``test``: which BigEarthNet.txt splits went into it
    was chosen by ``bigearthnet-task --split`` and is recorded in its task.json."""

    name = "bigearthnet-txt"
    splits = ("test",)
    split_aliases = {"corpus": "test"}
    queries_file = "queries.jsonl"
    qrels_file = "qrels"

    @classmethod
    def list_keys(cls, root: Path) -> set[str]:
        """Every patch of the task (S2 and S1 names)."""
        import pyarrow.parquet as pq

        table = pq.read_table(Path(root) / "patches.parquet", columns=["patch_id", "s1_name"])
        return set(table.column("patch_id").to_pylist()) | set(table.column("s1_name").to_pylist())

    def __init__(self, root: Path | str, split: str | None = None, sensors: Sequence[Sensor] = SENSORS,
                 limit: int | None = None, strict: bool = False) -> None:
        import pyarrow.parquet as pq

        self.root = Path(root)
        self.split, self.sensors, self.limit, self.strict = self.check_split(split), tuple(sensors), limit, strict
        for name in ("task.json", "patches.parquet"):
            if not (self.root / name).is_file():
                raise DataError(f"{self.root / name} not found: not a BigEarthNet task folder (rsretrieve bigearthnet-task)")
        task = read_json_object(self.root / "task.json", DataError, "a BigEarthNet task file", ("images", "format"))
        self.images, self.format = Path(task["images"]), task["format"]
        table = pq.read_table(self.root / "patches.parquet").to_pylist()
        samples = []
        self.places: dict[str, tuple[float, float]] = {}  # patch -> BigEarthNet.txt's centre lon/lat
        for row in table:
            for sensor, column in (("s2", "patch_id"), ("s1", "s1_name")):
                if sensor in self.sensors:
                    samples.append(SampleInfo(row[column], sensor, tuple(row["labels"])))  # type: ignore[arg-type]
                    self.places[row[column]] = _place(row.get("longitude"), row.get("latitude"))
        self.samples = samples[:limit] if limit else samples
        if not self.samples:
            raise DataError(f"{self.root}: no samples left after filters")

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name in ("patches.parquet", "task.json"):
            digest.update((self.root / name).read_bytes())
        return digest.hexdigest()

    def read_raw(self, key: str) -> np.ndarray:
        """The image of one patch as stored (for display)."""
        from rsretrieve.datasets.sensors import sensor_of_key

        store = open_store(self.images, self.format)
        try:
            return store.read(key, BANDS[sensor_of_key(key)])
        finally:
            store.close()

    def iter_batches(self, batches: Sequence[Sequence[SampleInfo]]) -> Iterator[Batch]:
        store = open_store(self.images, self.format)
        try:
            for batch in batches:
                sensor = batch[0].sensor
                images = np.stack([store.read(s.key, BANDS[sensor]) for s in batch])
                nonfinite = sum(self.clean(img, s.key, sensor) for img, s in zip(images, batch))
                yield Batch(sensor, [s.key for s in batch], images, nonfinite,
                            locations=np.array([self.places[s.key] for s in batch], np.float64))
        finally:
            store.close()


def _place(lon: object, lat: object) -> tuple[float, float]:
    """(lon, lat) in degrees; NaN for a missing or impossible value."""
    try:
        lon_f, lat_f = float(lon), float(lat)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return np.nan, np.nan
    if not (np.isfinite(lon_f) and np.isfinite(lat_f) and abs(lon_f) <= 180 and abs(lat_f) <= 90):
        return np.nan, np.nan
    return lon_f, lat_f


def _to_grid(array: np.ndarray, where: str) -> np.ndarray:
    """Bring a band to 120 x 120 (20 m and 60 m bands are repeated up), as float32."""
    array = np.asarray(array, np.float32)
    if array.ndim != 2 or array.shape[0] != array.shape[1] or PATCH % array.shape[0]:
        raise DataError(f"{where}: band shape {array.shape} does not divide the {PATCH} x {PATCH} grid")
    factor = PATCH // array.shape[0]
    return np.repeat(np.repeat(array, factor, 0), factor, 1) if factor > 1 else array


def open_store(path: Path, image_format: str) -> "_LmdbStore | _TiffStore":
    """The patch store at ``path``: a rico-hdl LMDB, or a folder of GeoTIFF patch folders."""
    return _LmdbStore(path) if image_format == "lmdb" else _TiffStore(path)


def _check_store(path: Path, image_format: str, patch: dict[str, Any]) -> None:
    """Read one patch pair now, so that a store of the other layout (or without the task's
    patches) fails here, naming the option, and not later at index time."""
    other = {"lmdb": "geotiff", "geotiff": "lmdb"}[image_format]
    if image_format == "lmdb" and path.is_dir() and not (path / "data.mdb").is_file():
        raise DataError(f"{path} is not an LMDB (no data.mdb); for folders of GeoTIFF patches pass --image-format geotiff")
    if image_format == "geotiff" and not path.is_dir():
        raise DataError(f"{path} is not a folder of GeoTIFF patch folders; for an LMDB pass --image-format lmdb")
    store = open_store(path, image_format)
    try:
        for key, sensor in ((patch["patch_id"], "s2"), (patch["s1_name"], "s1")):
            try:
                store.read(key, BANDS[sensor])
            except DataError as exc:
                raise DataError(f"{exc} (is {path} an {image_format} store of these patches? or --image-format {other})") from None
    finally:
        store.close()


class _LmdbStore:
    def __init__(self, path: Path) -> None:
        import lmdb

        try:
            self.env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=path.is_dir())
        except lmdb.Error as exc:
            raise DataError(f"{path}: cannot open LMDB: {exc}") from exc
        self.path = path

    def read(self, key: str, bands: Sequence[str]) -> np.ndarray:
        from safetensors.numpy import load

        with self.env.begin() as txn:
            value = txn.get(key.encode())
        if value is None:
            raise DataError(f"{self.path}: patch '{key}' not in the LMDB")
        tensors = load(value)
        missing = [b for b in bands if b not in tensors]
        if missing:
            raise DataError(f"{self.path}: patch '{key}' lacks band(s) {', '.join(missing)}")
        return np.stack([_to_grid(tensors[b], f"{self.path}:{key}:{b}") for b in bands])

    def close(self) -> None:
        self.env.close()


class _TiffStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders: dict[str, Path] = {}
        for folder, dirs, _ in os.walk(root):
            for name in dirs:
                self.folders.setdefault(name, Path(folder) / name)

    def read(self, key: str, bands: Sequence[str]) -> np.ndarray:
        import tifffile

        folder = self.folders.get(key)
        if folder is None:
            raise DataError(f"{self.root}: no folder for patch '{key}'")
        out = []
        for band in bands:
            path = folder / f"{key}_{band}.tif"
            if not path.is_file():
                raise DataError(f"{path} not found (band {band} of patch '{key}')")
            out.append(_to_grid(tifffile.imread(path), str(path)))
        return np.stack(out)

    def close(self) -> None:
        self.folders.clear()
