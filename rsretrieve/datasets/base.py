"""The dataset contract: what every reader gives the pipeline (index, search, eval, show,
describe), so that no pipeline module names a concrete format.

``Dataset`` is what every reader implements: a declared list of splits, a fingerprint, a raw
read of one item, images as batches, and where its queries and qrels are. ``PatchDataset``
adds what image corpora (CrisisLandMark, BigEarthNet.txt tasks) need for indexing: samples
selected by split, sensors and limit, planned in batches of one sensor, and sharding.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from rsretrieve.datasets.sensors import SENSORS, Sensor, sensor_of_key
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.registry import did_you_mean

# Fill values for non-finite pixels, as in the CrisisLandMark authors' loader.
NONFINITE_FILL: dict[str, float] = {"s2": 0.0, "s1": 1e-6, "rgb": 0.0}


@dataclass(frozen=True, slots=True)
class SampleInfo:
    key: str
    sensor: Sensor
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Batch:
    sensor: Sensor
    keys: list[str]
    images: np.ndarray
    nonfinite: int  # NaN/inf pixels replaced in the whole batch
    nonfinite_per_sample: tuple[int, ...] = ()  # the same, sample by sample (empty: not counted)
    locations: np.ndarray | None = None  # (N, 2) centre lon/lat degrees, NaN unknown (None: none known)


class Dataset(ABC):
    """Every dataset reader. Subclasses declare ``name``, ``splits`` (the first is the default,
    the retrieval corpus) and, when the format ships topics, ``queries_file`` / ``qrels_file``
    relative to the root; they set ``root`` and ``split`` and implement ``fingerprint`` and
    ``read_raw``. Constructors take ``(root, split=None, ...)``: None is the default split."""

    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
    split_aliases: ClassVar[Mapping[str, str]] = {}
    queries_file: ClassVar[str | None] = None
    qrels_file: ClassVar[str | None] = None
    root: Path
    split: str
    strict: bool = False

    @classmethod
    def check_split(cls, split: str | None) -> str:
        """The declared split ``split`` names (None: the default); anything else is an error
        that lists the format's splits."""
        if split is None:
            return cls.splits[0]
        name = cls.split_aliases.get(split.lower(), split.lower())
        if name not in cls.splits:
            known = [*cls.splits, *(f"{a} (= {t})" for a, t in cls.split_aliases.items())]
            raise ConfigError(
                f"unknown split '{split}' for dataset format '{cls.name}'.{did_you_mean(split, [*cls.splits, *cls.split_aliases])} "
                f"Its splits: {', '.join(known)}."
            )
        return name

    @classmethod
    def topic_paths(cls, root: Path) -> tuple[Path, Path] | None:
        """Where a dataset of this format at ``root`` keeps its queries and qrels (None: the
        format ships none; give --queries and --qrels)."""
        if cls.queries_file is None or cls.qrels_file is None:
            return None
        return Path(root) / cls.queries_file, Path(root) / cls.qrels_file

    @classmethod
    def list_keys(cls, root: Path) -> set[str] | None:
        """Every key of the dataset at ``root``, all splits (None: it cannot be listed cheaply).
        Tells a judged document that does not exist from one outside the indexed part."""
        return None

    @property
    def queries_path(self) -> Path | None:
        paths = self.topic_paths(self.root)
        return None if paths is None else paths[0]

    @property
    def qrels_path(self) -> Path | None:
        paths = self.topic_paths(self.root)
        return None if paths is None else paths[1]

    @abstractmethod
    def fingerprint(self) -> str:
        """A digest that changes whenever what an index of this dataset holds could change."""

    def content_digest(self, on_bytes: Callable[[int], None] | None = None) -> str | None:
        """A hash of the data's bytes for ``index --verify`` (None: the fingerprint covers it)."""
        return None

    @abstractmethod
    def read_raw(self, key: str) -> np.ndarray:
        """The stored image of ``key`` (bands first), of any split, as it is (NaN kept)."""

    def sensor_of(self, key: str) -> str:
        """The sensor of an item, told by its key (CrisisLandMark sources, Sentinel product names)."""
        return sensor_of_key(key)

    def read_batch(self, keys: Sequence[str]) -> Batch:
        """The images of ``keys`` (one sensor, any split) cleaned as indexing cleans them:
        what describe and other one-off reads embed."""
        sensors = {self.sensor_of(key) for key in keys}
        if len(sensors) != 1:
            raise DataError(f"{self.root}: keys {', '.join(keys)} are of sensors {', '.join(sorted(sensors))}; one batch holds one")
        sensor = sensors.pop()
        images = np.stack([np.asarray(self.read_raw(key), np.float32) for key in keys])
        counts = tuple(self.clean(image, key, sensor) for image, key in zip(images, keys))
        return Batch(sensor, list(keys), images, sum(counts), counts)  # type: ignore[arg-type]

    def clean(self, image: np.ndarray, key: str, sensor: str) -> int:
        """Replace NaN/inf pixels in place (or reject them with ``strict``); return the count."""
        if np.isfinite(image.sum(dtype=np.float64)):  # any NaN or inf makes the sum non-finite
            return 0
        bad = ~np.isfinite(image)
        count = int(bad.sum())
        if count and self.strict:
            raise DataError(f"key '{key}': {count} NaN/inf pixels (rejected by --strict)")
        if count:
            image[bad] = NONFINITE_FILL[sensor]
        return count


class PatchDataset(Dataset):
    """An image corpus to index: ``samples`` selected at construction by split, ``sensors`` and
    ``limit``, read in planned batches of one sensor. Subclasses set ``samples``, ``sensors``,
    ``limit`` and ``strict`` and implement ``iter_batches``."""

    samples: list[SampleInfo]
    sensors: tuple[Sensor, ...] = SENSORS
    limit: int | None = None
    shard: tuple[int, int] | None = None

    @abstractmethod
    def iter_batches(self, batches: Sequence[Sequence[SampleInfo]]) -> Iterator[Batch]:
        """Read the planned ``batches`` (each of one sensor), cleaned, in order."""

    def preflight(self) -> None:
        """Cheap checks of the whole selection before any encoder loads or anything is
        written (a format overrides it where it can, e.g. listed keys absent from its files)."""

    def iter_batches_into(
        self, batches: Sequence[Sequence[SampleInfo]], allocate: Callable[[tuple[int, ...]], np.ndarray]
    ) -> Iterator[Batch]:
        """``iter_batches``, each batch's images in an array that ``allocate(shape)`` gives
        (a parallel reader's shared slot). This default copies into it; a format that can
        read straight into the array overrides it."""
        for batch in self.iter_batches(batches):
            images = allocate(batch.images.shape)
            images[...] = batch.images
            yield dataclasses.replace(batch, images=images)

    def image_shape(self, sensor: Sensor) -> tuple[int, ...]:
        """The (bands, height, width) of this corpus' images of ``sensor``: what parallel
        readers size their shared slots by. Formats of a fixed patch size override this; the
        default reads the first sample of that sensor."""
        key = next(s.key for s in self.samples if s.sensor == sensor)
        return tuple(self.read_batch([key]).images.shape[1:])

    def take_shard(self, index: int, count: int) -> None:
        """Keep contiguous part ``index`` of ``count`` (0-based) of the selected samples, in
        planned order (all S2, then S1): shards 0..N-1 then hold the rows of the unsharded
        index in its order, so their merge is the same index."""
        if count < 1 or not 0 <= index < count:
            raise ConfigError(f"--shard must be I/N with 0 <= I < N, got {index}/{count}")
        n = len(self.samples)
        ordered = [s for sensor in SENSORS for s in self.samples if s.sensor == sensor]
        self.samples = ordered[index * n // count : (index + 1) * n // count]
        if not self.samples:
            raise DataError(f"shard {index}/{count} is empty: only {n} samples")
        self.shard = (index, count)

    def plan_batches(self, batch_size: int, samples: Sequence[SampleInfo] | None = None) -> list[list[SampleInfo]]:
        """Deterministic batches of one sensor each (all S2 first, then S1), of ``samples``
        (default: every selected sample)."""
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        batches: list[list[SampleInfo]] = []
        for sensor in SENSORS:
            group = [s for s in (self.samples if samples is None else samples) if s.sensor == sensor]
            batches.extend(group[i : i + batch_size] for i in range(0, len(group), batch_size))
        return batches
