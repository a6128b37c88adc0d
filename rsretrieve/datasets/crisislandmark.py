"""Reader for the CrisisLandMark HDF5 release (main file of external links + shards).

Samples stream in batches of one sensor at a time (S1 and S2 have different band
counts); shard files are opened on demand and closed when the iteration ends.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import cached_property
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsretrieve.datasets.base import Batch, PatchDataset, SampleInfo
from rsretrieve.datasets.labels import normalise_labels, parse_labels
from rsretrieve.datasets.sensors import BANDS, SENSORS, Sensor, sensor_of_key
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.geo import CENTRE, LonLat, crs_code

try:  # Real shards may be compressed with filters that only hdf5plugin registers.
    import hdf5plugin  # noqa: F401
except ImportError:  # pragma: no cover - hdf5plugin is a declared dependency
    hdf5plugin = None

MAIN_FILE = "crisislandmark.h5"
METADATA_FILE = "metadata.parquet"
QUERIES_FILE = "queries.jsonl"
QRELS_DIR = "qrels"
PATCH_SIZE = 120
MAX_LINK_HOPS = 16
SPLITS = ("test", "train")  # the test part (80 %) is the retrieval corpus
METADATA_BATCH = 65_536  # metadata.parquet rows turned into Python objects at a time


@dataclass(frozen=True)
class Sample:
    """One sample with everything the file holds for it."""

    key: str
    sensor: Sensor
    image: np.ndarray
    coords: np.ndarray | None
    crs: int | None
    timestamp: float | None
    labels: tuple[str, ...]


class CrisisLandMark(PatchDataset):
    """A CrisisLandMark-format folder filtered by split, sensors and an optional limit."""

    name = "crisislandmark"
    splits = SPLITS
    split_aliases = {"corpus": "test"}
    queries_file = QUERIES_FILE
    qrels_file = QRELS_DIR

    @classmethod
    def list_keys(cls, root: Path) -> set[str]:
        """Every sample key of the dataset, all splits (to tell an unknown judged document
        from one that is only outside the indexed part)."""
        return {key for key, _, _ in read_metadata(Path(root) / METADATA_FILE)}

    def __init__(
        self,
        root: Path | str,
        split: str | None = None,
        sensors: Sequence[Sensor] = SENSORS,
        limit: int | None = None,
        strict: bool = False,
    ) -> None:
        self.root = Path(root)
        self.split = self.check_split(split)
        self.sensors = tuple(sensors)
        self.limit = limit
        self.strict = strict
        self.main_path = self.root / MAIN_FILE
        self._fingerprint: str | None = None
        if not self.root.is_dir():
            raise DataError(f"dataset folder {self.root} not found")
        for required in (self.main_path, self.root / METADATA_FILE):
            if not required.is_file():
                raise DataError(f"{required} not found: not a CrisisLandMark folder")
        if limit is not None and limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}")
        self.samples = self._select(read_metadata(self.root / METADATA_FILE))
        if not self.samples:
            raise DataError(
                f"{self.root}: no samples left after filters "
                f"(split={self.split}, sensors={','.join(self.sensors)})"
            )

    def _select(self, rows: Iterator[tuple[str, str, list[str]]]) -> list[SampleInfo]:
        """The samples of the split, sensors and limit; every row is still read, so that a
        bad row past the limit is an error too."""
        selected: list[SampleInfo] = []
        for key, split, labels in rows:
            if split != self.split or (self.limit is not None and len(selected) >= self.limit):
                continue
            sensor = sensor_of_key(key)
            if sensor in self.sensors:
                selected.append(SampleInfo(key, sensor, tuple(sys.intern(x) for x in normalise_labels(labels))))
        return selected

    def fingerprint(self) -> str:
        """What an index built from this folder depends on: the content of the main file and
        metadata.parquet, and the name, size and modification time of every shard (any HDF5
        file below the folder). A shard rewritten in place changes its modification time, so
        an index or a partial build of the old content is never reused. ``content_digest``
        hashes the shards' bytes too, for ``--verify``. Computed once per dataset."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name in (MAIN_FILE, METADATA_FILE):
                digest.update(name.encode())
                digest.update((self.root / name).read_bytes())
            for shard in self.shard_files():
                stat = shard.stat()
                digest.update(f"{shard.relative_to(self.root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def shard_files(self) -> list[Path]:
        """Every HDF5 file of the folder but the main file, sorted."""
        return sorted(p for p in self.root.rglob("*.h5") if p.is_file() and p != self.main_path)

    def content_digest(self, on_bytes: Callable[[int], None] | None = None) -> str:
        """sha256 over the bytes of every shard (slow on the full release: ``--verify``)."""
        digest = hashlib.sha256()
        for shard in self.shard_files():
            digest.update(str(shard.relative_to(self.root)).encode())
            with open(shard, "rb") as handle:
                while block := handle.read(1 << 22):
                    digest.update(block)
                    if on_bytes:
                        on_bytes(len(block))
        return digest.hexdigest()

    def image_shape(self, sensor: Sensor) -> tuple[int, ...]:
        return (len(BANDS[sensor]), PATCH_SIZE, PATCH_SIZE)

    def preflight(self) -> None:
        """Every selected key is a key of the main file (one listing of its names, seconds
        on the full release), so a key that metadata.parquet lists but the HDF5 lacks stops
        the run before the encoder loads, not after hours of embedding."""
        import h5py

        try:
            with h5py.File(self.main_path, "r") as main:
                present = set(main.keys())
        except (OSError, RuntimeError) as exc:
            raise DataError(f"{self.main_path}: cannot open as HDF5: {exc}") from None
        absent = [s.key for s in self.samples if s.key not in present]
        if absent:
            shown = ", ".join(f"'{k}'" for k in absent[:3])
            raise DataError(f"{self.main_path}: {len(absent)} key(s) listed in {METADATA_FILE} are not in it ({shown}"
                            f"{', ...' if len(absent) > 3 else ''}); `rsretrieve check --data {self.root}` lists every problem")

    def iter_batches(
        self, batches: Sequence[Sequence[SampleInfo]]
    ) -> Iterator[Batch]:
        """Read the given planned batches; shard files stay open until the iterator ends."""
        return self.iter_batches_into(batches, lambda shape: np.empty(shape, np.float32))

    def iter_batches_into(
        self, batches: Sequence[Sequence[SampleInfo]], allocate: Callable[[tuple[int, ...]], np.ndarray]
    ) -> Iterator[Batch]:
        """Each image read by HDF5 straight into the array ``allocate`` gives."""
        with _Shards(self.root, self.main_path) as shards:
            for batch in batches:
                sensor = batch[0].sensor
                yield self._read_batch(shards, batch, allocate((len(batch), len(BANDS[sensor]), PATCH_SIZE, PATCH_SIZE)))

    def _read_batch(self, shards: "_Shards", batch: Sequence[SampleInfo], images: np.ndarray) -> Batch:
        sensor = batch[0].sensor
        counts = []
        centres = np.full((len(batch), 3), np.nan)  # x, y, crs of each centre pixel
        for i, info in enumerate(batch):
            with _hdf5_errors(self.root, info.key):
                group = shards.group(info.key)
                _read_image(shards.member(group, "image", info.key), info.key, sensor, out=images[i])
                centres[i] = _centre(shards, group, info.key)
            counts.append(self.clean(images[i], info.key, sensor))
        lon, lat = self._lonlat.convert(centres[:, 0], centres[:, 1], centres[:, 2])
        return Batch(sensor, [s.key for s in batch], images, sum(counts), tuple(counts), np.stack([lon, lat], axis=1))

    @cached_property
    def _lonlat(self) -> LonLat:
        return LonLat()

    @cached_property
    def _known_keys(self) -> set[str]:
        return self.list_keys(self.root)

    def read_raw(self, key: str) -> np.ndarray:
        """The stored image of ``key`` (any split) as it is (NaN/inf kept), for display."""
        if key not in self._known_keys:
            raise DataError(f"{self.root}: key '{key}' is not a sample of this dataset (not in {METADATA_FILE})")
        sensor = sensor_of_key(key)
        with _Shards(self.root, self.main_path) as shards, _hdf5_errors(self.root, key):
            group = shards.group(key)
            return _read_image(shards.member(group, "image", key), key, sensor)

    def read_sample(self, key: str) -> Sample:
        """Read one sample with coords and attributes (for inspection, not for indexing)."""
        info = next((s for s in self.samples if s.key == key), None)
        if info is None:
            raise DataError(f"key '{key}' is not in the selected samples of {self.root}")
        with _Shards(self.root, self.main_path) as shards, _hdf5_errors(self.root, key):
            group = shards.group(key)
            image = _read_image(shards.member(group, "image", key), key, info.sensor)
            self.clean(image, key, info.sensor)
            coords = np.asarray(shards.member(group, "coords", key), np.float32) if "coords" in group else None
            crs, _ = crs_code(group.attrs.get("crs"))
            timestamp = _scalar(group.attrs.get("timestamp"))
        return Sample(
            key=key,
            sensor=info.sensor,
            image=image,
            coords=coords,
            crs=crs,
            timestamp=timestamp,
            labels=info.labels,
        )


@contextmanager
def _hdf5_errors(root: Path, key: str) -> Iterator[None]:
    """h5py reports damaged files as OSError, RuntimeError, KeyError...: name the key instead."""
    try:
        yield
    except DataError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise DataError(f"{root}: key '{key}': damaged HDF5 data ({str(exc).splitlines()[0][:120]})") from None


def read_metadata(path: Path) -> Iterator[tuple[str, str, list[str]]]:
    """Rows (key, split, labels) of metadata.parquet, validated, read a record batch at a
    time: the release's 647,000 rows never sit in memory as Python objects all at once."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for bad files
        raise DataError(f"{path}: cannot read parquet: {exc}") from exc
    names = parquet.schema_arrow.names
    missing = [c for c in ("key", "split", "labels") if c not in names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(names)})")
    seen: dict[str, int] = {}
    row = 0
    try:
        batches = parquet.iter_batches(batch_size=METADATA_BATCH, columns=["key", "split", "labels"])
        for batch in batches:
            keys, splits, labels = (batch.column(i).to_pylist() for i in range(3))
            for key, split, label_list in zip(keys, splits, labels):
                yield _metadata_row(path, row, key, split, label_list, seen)
                row += 1
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged row group surfaces while reading
        raise DataError(f"{path}: cannot read parquet: {exc}") from exc


def _metadata_row(path: Path, row: int, key: object, split: object, label_list: object,
                  seen: dict[str, int]) -> tuple[str, str, list[str]]:
    if not isinstance(key, str) or not key:
        raise DataError(f"{path}: row {row}: field 'key' must be a non-empty string")
    if key in seen:
        raise DataError(f"{path}: key '{key}' appears twice (rows {seen[key]} and {row})")
    seen[key] = row
    split = CrisisLandMark.split_aliases.get(split, split) if isinstance(split, str) else split
    if split not in SPLITS:
        raise DataError(f"{path}: key '{key}': field 'split' is {split!r}; expected train or test")
    labels, _ = parse_labels(label_list)
    if labels is None:
        raise DataError(f"{path}: key '{key}': field 'labels' must be a list of strings")
    return key, split, labels


class _Shards:
    """Resolves sample keys to HDF5 groups, keeping each shard open once."""

    def __init__(self, root: Path, main_path: Path) -> None:
        self.root = root
        self.main_path = main_path
        self._stack = ExitStack()
        self._files: dict[Path, object] = {}
        self._roots: dict[Path, object] = {}
        self._targets: dict[tuple[str, str], Path] = {}  # (linking file, link text) -> confined file

    def __enter__(self) -> "_Shards":
        self._main = self._open(self.main_path)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _open(self, path: Path):  # noqa: ANN202 - h5py.File
        import h5py

        handle = self._files.get(path)
        if handle is None:
            try:
                handle = self._stack.enter_context(h5py.File(path, "r"))
            except (OSError, RuntimeError) as exc:
                raise DataError(f"{path}: cannot open as HDF5: {exc}") from exc
            self._files[path] = handle
        return handle

    def _root(self, path: Path):  # noqa: ANN202 - h5py.Group
        root = self._roots.get(path)
        if root is None:
            root = self._roots[path] = self._open(path)["/"]
        return root

    def group(self, key: str):  # noqa: ANN201 - h5py.Group
        """The group of sample ``key``, every link on the way checked (``walk``)."""
        import h5py

        group = self.walk(self._root(self.main_path), key, key, file=self.main_path,
                          missing=f"{self.main_path}: key '{key}' (listed in {METADATA_FILE}) not found")
        if not isinstance(group, h5py.Group):
            raise DataError(f"broken link: key '{key}' points to {where(group)}, which is not a group")
        return group

    def member(self, group, name: str, key: str):  # noqa: ANN001, ANN201 - h5py objects
        """A dataset of a sample group (``image``, ``coords``), its own links checked too."""
        return self.walk(group, name, key, missing=f"{where(group)}: key '{key}' has no '{name}' dataset")

    def walk(self, start, path: str, key: str, hops: int = 0, file: Path | None = None,  # noqa: ANN001, ANN201
             missing: str | None = None):
        """Follow ``path`` from group ``start`` (of HDF5 file ``file``) one component at a time.
        Soft links are followed within their file, external links only to files inside the
        dataset folder: every hop of every chain is checked, so no link in the main file or
        in a shard can make rsretrieve read an HDF5 file elsewhere on the machine. ``missing``
        is the error for a first component that does not exist."""
        return self._walk(start, path, key, hops, file or Path(start.file.filename), missing)[0]

    def _walk(self, start, path: str, key: str, hops: int, file: Path, missing: str | None):  # noqa: ANN001, ANN202
        """``walk``, also returning the file the path ends in (a soft link may lead through an
        external link into another file; later relative links resolve from there)."""
        import h5py

        if hops > MAX_LINK_HOPS:
            raise DataError(f"{self.main_path}: key '{key}' goes through more than {MAX_LINK_HOPS} links (a cycle?)")
        node = self._root(file) if path.startswith("/") else start
        for name in (part for part in path.split("/") if part and part != "."):
            link = node.get(name, getlink=True) if isinstance(node, h5py.Group) else None
            if link is None:
                raise DataError(missing or f"broken link: key '{key}' points to {file}:{path}, which does not exist")
            missing = None
            if isinstance(link, h5py.SoftLink):
                node, file = self._walk(node, link.path, key, hops + 1, file, None)
            elif isinstance(link, h5py.ExternalLink):
                shard = self._confined(key, file, link.filename)
                if shard not in self._files and not shard.is_file():
                    raise DataError(f"shard file {shard} (linked from key '{key}') not found")
                node, file = self._walk(self._root(shard), link.path, key, hops + 1, shard, None)
            else:
                node = node[name]  # a hard link: no file or path of its own to check
        return node, file

    def _confined(self, key: str, linking_file: Path, filename: str) -> Path:
        """An external link's file, resolved as HDF5 does (beside the file holding the link),
        must lie inside the dataset folder. The check is on the link text, so shards that are
        symbolic links to another disk still work. Checked once per link text and file."""
        target = self._targets.get((str(linking_file), filename))
        if target is None:
            target = Path(os.path.normpath(linking_file.parent / filename))
            if not target.is_relative_to(Path(os.path.normpath(self.root))):
                raise DataError(
                    f"{linking_file}: key '{key}' links outside the dataset folder to '{filename}'"
                )
            self._targets[(str(linking_file), filename)] = target
        return target


def where(node) -> str:  # noqa: ANN001 - an h5py object
    """File and path of an HDF5 object, for messages (computed only when one is needed)."""
    return f"{node.file.filename}:{node.name}"


def _read_image(dataset, key: str, sensor: Sensor, out: np.ndarray | None = None) -> np.ndarray:  # noqa: ANN001
    """A sample's image as float32, read straight into ``out`` when given. Integer images are
    refused: the release stores float32 (S2 reflectance x 10000, S1 backscatter in dB), and an
    integer copy has lost or changed that scale in ways a reader cannot know."""
    import h5py

    if not isinstance(dataset, h5py.Dataset):
        raise DataError(f"{where(dataset.parent)}: key '{key}': 'image' is not a dataset")
    dtype = dataset.dtype
    if dtype.kind in "iub":
        raise DataError(
            f"{where(dataset.parent)}: key '{key}': image dtype {dtype} (integers); CrisisLandMark images are float32 "
            "(S2 reflectance x 10000, S1 dB). Convert the shard to float32 with those units"
        )
    if dtype.kind == "c":
        raise DataError(f"{where(dataset.parent)}: key '{key}': image dtype {dtype} (complex); CrisisLandMark images are "
                        "real float32, and reading this one would drop its imaginary part (rsretrieve check calls it an error too)")
    expected = (len(BANDS[sensor]), PATCH_SIZE, PATCH_SIZE)
    if dataset.shape != expected:
        raise DataError(
            f"{where(dataset.parent)}: key '{key}': image shape {tuple(dataset.shape)} does not match "
            f"sensor {sensor} {expected}"
        )
    try:
        if out is not None and dtype == np.float32:
            dataset.read_direct(out)
            return out
        image = np.asarray(dataset[()], dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{where(dataset.parent)}: key '{key}': image dtype {dtype} is not numeric") from None
    except OSError as exc:
        raise DataError(
            f"{where(dataset.parent)}: key '{key}': cannot read image ({exc}); "
            "compressed shards need `pip install hdf5plugin`"
        ) from exc
    if out is not None:
        out[...] = image
        return out
    return image


def _centre(shards: _Shards, group, key: str) -> tuple[float, float, float]:  # noqa: ANN001 - h5py.Group
    """x, y of the centre pixel ``coords[:, 60, 60]`` (float or integer) and the sample's
    ``crs`` code (``geo.crs_code``: numbers or text); NaN for what is missing, not shaped
    (2, 120, 120) or not a whole EPSG code (``rsretrieve check`` reports those)."""
    import h5py

    crs, _ = crs_code(group.attrs.get("crs"))
    if "coords" not in group:
        return np.nan, np.nan, np.nan
    coords = shards.member(group, "coords", key)
    if (not isinstance(coords, h5py.Dataset) or coords.shape != (2, PATCH_SIZE, PATCH_SIZE)
            or coords.dtype.kind not in "fiu"):
        return np.nan, np.nan, np.nan
    x, y = coords[:, CENTRE, CENTRE].astype(np.float64)
    return float(x), float(y), np.nan if crs is None else float(crs)


def _scalar(value: object) -> float | None:
    if value is None:
        return None
    array = np.asarray(value, dtype=np.float64).ravel()
    if array.size == 0 or not np.isfinite(array[0]):
        return None
    return float(array[0])
