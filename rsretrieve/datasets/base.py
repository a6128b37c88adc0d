"""What every image dataset gives the indexing pipeline: samples, batches of one sensor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rsretrieve.datasets.sensors import SENSORS, Sensor
from rsretrieve.errors import ConfigError, DataError

# Fill values for non-finite pixels, as in the CrisisLandMark authors' loader.
NONFINITE_FILL: dict[Sensor, float] = {"s2": 0.0, "s1": 1e-6}


@dataclass(frozen=True)
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


class PatchDataset:
    """Base of image datasets: ``samples`` selected at construction, batched by sensor.

    Subclasses set ``name``, ``root``, ``split``, ``sensors``, ``limit``, ``strict`` and
    ``samples``, and implement ``fingerprint`` and ``iter_batches``.
    """

    name: str
    samples: list[SampleInfo]
    strict: bool
    shard: tuple[int, int] | None = None

    def take_shard(self, index: int, count: int) -> None:
        """Keep contiguous part ``index`` of ``count`` (0-based) of the selected samples."""
        if count < 1 or not 0 <= index < count:
            raise ConfigError(f"--shard must be I/N with 0 <= I < N, got {index}/{count}")
        n = len(self.samples)
        self.samples = self.samples[index * n // count : (index + 1) * n // count]
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

    def clean(self, image: np.ndarray, key: str, sensor: Sensor) -> int:
        """Replace NaN/inf pixels in place (or reject them with ``strict``); return the count."""
        bad = ~np.isfinite(image)
        count = int(bad.sum())
        if count and self.strict:
            raise DataError(f"key '{key}': {count} NaN/inf pixels (rejected by --strict)")
        if count:
            image[bad] = NONFINITE_FILL[sensor]
        return count
