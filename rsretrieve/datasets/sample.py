"""Seeded generator of a small CrisisLandMark-format dataset whose pixels mean something.

Each patch is a mosaic of land-cover classes drawn from smooth random fields; every class
has a Sentinel-2 reflectance signature and a Sentinel-1 backscatter (dB) signature, so a
model can learn to retrieve by class. Labels, queries and graded qrels follow the mosaic:
the largest class is relevance 2, any other class covering >= 5 % of the patch is 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsretrieve.datasets.crisislandmark import (
    MAIN_FILE, METADATA_FILE, PATCH_SIZE, QRELS_DIR, QUERIES_FILE,
)
from rsretrieve.datasets.labels import CLC_TO_DW, CLASSES
from rsretrieve.datasets.sensors import SOURCES
from rsretrieve.paths import cache_home
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.io import atomic_dir

SAMPLE_VERSION = 1
DEFAULT_SAMPLES = 480
DEFAULT_SEED = 0

# Surface reflectance per band, B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B11 B12.
S2_SIGNATURES: dict[str, tuple[float, ...]] = {
    "water": (.060, .050, .040, .030, .025, .020, .018, .015, .012, .010, .005, .003),
    "trees": (.030, .030, .050, .030, .080, .250, .300, .320, .330, .330, .160, .080),
    "crops": (.040, .050, .080, .060, .120, .300, .360, .400, .410, .400, .250, .140),
    "shrub and scrub": (.050, .060, .090, .100, .140, .200, .230, .250, .260, .260, .300, .220),
    "grass": (.040, .050, .080, .070, .130, .250, .290, .310, .320, .310, .280, .180),
    "built": (.100, .110, .130, .150, .160, .180, .190, .200, .210, .210, .240, .220),
    "flooded vegetation": (.040, .040, .060, .040, .070, .140, .170, .180, .180, .170, .080, .040),
    "bare": (.120, .140, .180, .230, .260, .280, .300, .310, .320, .320, .380, .330),
    "snow and ice": (.900, .880, .860, .840, .820, .800, .780, .760, .740, .700, .100, .080),
    "flooded area": (.080, .080, .090, .090, .080, .060, .050, .050, .040, .030, .020, .010),
    "earthquake damage": (.140, .150, .170, .190, .200, .210, .220, .220, .230, .230, .270, .250),
    "burned area": (.040, .040, .050, .060, .080, .090, .100, .100, .110, .110, .200, .200),
}
# Backscatter (VV, VH) in dB and speckle standard deviation in dB.
S1_SIGNATURES: dict[str, tuple[float, float, float]] = {
    "water": (-22.0, -28.0, 1.0),
    "trees": (-7.5, -13.0, 1.5),
    "crops": (-10.0, -17.0, 1.5),
    "shrub and scrub": (-9.0, -16.0, 1.5),
    "grass": (-11.0, -18.5, 1.5),
    "built": (-3.0, -10.0, 2.5),
    "flooded vegetation": (-6.0, -17.0, 1.5),
    "bare": (-14.0, -23.0, 1.5),
    "snow and ice": (-12.5, -20.5, 1.0),
    "flooded area": (-19.5, -26.0, 1.0),
    "earthquake damage": (-5.0, -11.0, 3.5),
    "burned area": (-12.0, -21.0, 1.5),
}

# Source -> (shard file, crisis event tag or None). Europe (benv2*) carries CLC names.
SOURCE_SHARDS: dict[str, tuple[str, str | None]] = {
    "benv2s2": ("benv2s2_part{part}.h5", None),
    "benv2s1": ("benv2s1_part{part}.h5", None),
    "cabuar": ("cabuar.h5", "wildfire"),
    "sen2flood": ("sen12flood.h5", "flooding"),
    "sen1flood": ("sen12flood.h5", "flooding"),
    "mmflood": ("mmflood.h5", "flooding"),
    "quakeset": ("quakeset.h5", "earthquake"),
}
EVENT_CLASS = {"wildfire": "burned area", "flooding": "flooded area", "earthquake": "earthquake damage"}
SOURCE_CYCLE = ("benv2s2", "benv2s1", "cabuar", "benv2s1", "benv2s2", "mmflood",
                "sen2flood", "quakeset", "benv2s2", "sen1flood")
LAND_CLASSES = tuple(c for c in CLASSES if c not in EVENT_CLASS.values())
BENV2_PARTS = 4
TRAIN_FRACTION = 0.2


@dataclass(frozen=True)
class GeneratedSample:
    key: str
    source: str
    split: str
    classes: tuple[str, ...]  # by area, largest first
    raw_labels: tuple[str, ...]


def _smooth_fields(rng: np.random.Generator, count: int, cells: int = 6) -> np.ndarray:
    """``count`` smooth random fields of PATCH_SIZE^2 (bilinear upsampling of a coarse grid)."""
    coarse = rng.standard_normal((count, cells + 1, cells + 1))
    axis = np.linspace(0, cells, PATCH_SIZE)
    i0 = np.minimum(axis.astype(int), cells - 1)
    t = axis - i0
    rows = coarse[:, i0, :] * (1 - t)[None, :, None] + coarse[:, i0 + 1, :] * t[None, :, None]
    return rows[:, :, i0] * (1 - t)[None, None, :] + rows[:, :, i0 + 1] * t[None, None, :]


def class_map(rng: np.random.Generator, classes: list[str]) -> np.ndarray:
    """Pixel -> index into ``classes``; the first class gets a head start so it dominates."""
    fields = _smooth_fields(rng, len(classes))
    fields[0] += 0.8
    return np.argmax(fields, axis=0)


def render(rng: np.random.Generator, sensor: str, classes: list[str], cmap: np.ndarray) -> np.ndarray:
    if sensor == "s2":
        sig = np.array([S2_SIGNATURES[c] for c in classes], np.float32)  # (C, 12)
        image = sig[cmap].transpose(2, 0, 1) * 10000.0
        image *= 1.0 + 0.06 * rng.standard_normal(image.shape).astype(np.float32)
        return np.clip(image, 0, None).astype(np.float32)
    sig = np.array([S1_SIGNATURES[c] for c in classes], np.float32)  # (C, 3)
    image = sig[cmap][..., :2].transpose(2, 0, 1)
    speckle = sig[cmap][..., 2][None] * rng.standard_normal((2, PATCH_SIZE, PATCH_SIZE))
    return (image + speckle).astype(np.float32)


def _raw_labels(rng: np.random.Generator, source: str, classes: tuple[str, ...]) -> tuple[str, ...]:
    """Labels as the release stores them: CLC names for benv2, DW names + event tags otherwise."""
    event = SOURCE_SHARDS[source][1]
    if event is None:
        out = []
        for c in classes:
            names = sorted(n for n, dw in CLC_TO_DW.items() if dw == c)
            out.append(str(rng.choice(names)).capitalize())
        return tuple(out)
    return tuple(event if c == EVENT_CLASS[event] else c.title() for c in classes)


def _plan(n: int, seed: int, train_fraction: float) -> list[tuple[GeneratedSample, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        source = SOURCE_CYCLE[i % len(SOURCE_CYCLE)]
        sensor = SOURCES[source]
        event = SOURCE_SHARDS[source][1]
        extra = list(rng.choice(LAND_CLASSES, size=int(rng.integers(1, 3)), replace=False))
        if event is not None:
            crisis = EVENT_CLASS[event]
            candidates = [crisis, *extra] if rng.random() < 0.6 else [*extra[:1], crisis, *extra[1:]]
        else:
            pool = [c for c in LAND_CLASSES if c != "snow and ice"] + ["burned area"]
            candidates = list(rng.choice(pool, size=int(rng.integers(1, 4)), replace=False))
        cmap = class_map(rng, candidates)
        areas = np.bincount(cmap.ravel(), minlength=len(candidates)) / cmap.size
        order = [j for j in np.argsort(-areas, kind="stable") if areas[j] >= 0.05]
        classes = tuple(candidates[j] for j in order)
        image = render(rng, sensor, candidates, cmap)
        split = "train" if rng.random() < train_fraction else "test"
        key = f"{source}_{i:06d}"
        sample = GeneratedSample(key, source, split, classes, _raw_labels(rng, source, classes))
        out.append((sample, image, _coords(rng)))
    return out


def _coords(rng: np.random.Generator) -> np.ndarray:
    x0, y0 = rng.uniform(3e5, 7e5), rng.uniform(4.5e6, 6.5e6)
    cols = x0 + 10.0 * np.arange(PATCH_SIZE)
    rows = y0 - 10.0 * np.arange(PATCH_SIZE)
    return np.stack(np.meshgrid(cols, rows)).astype(np.float32)


def queries_for(classes: tuple[str, ...] = CLASSES) -> dict[str, str]:
    return {f"q-{c.replace(' ', '-')}": f"satellite image of {c}" for c in classes}


def generate_sample(
    out: Path | str,
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
    compression: str | None = None,
    overwrite: bool = False,
    train_fraction: float = TRAIN_FRACTION,
) -> Path:
    """Write a CrisisLandMark-format folder at ``out`` (atomically) and return it."""
    import h5py
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    if n_samples < 10:
        raise ConfigError(f"--n-samples must be at least 10, got {n_samples}")
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; pass --force to replace it")
    filters = _compression(compression)
    if not 0 < train_fraction < 1:
        raise ConfigError(f"train fraction must be between 0 and 1, got {train_fraction}")
    plan = _plan(n_samples, seed, train_fraction)
    with atomic_dir(out, replace=True, what="a sample dataset of rsretrieve sample") as tmp:
        shards: dict[str, h5py.File] = {}
        try:
            with h5py.File(tmp / MAIN_FILE, "w") as main:
                for i, (s, image, coords) in enumerate(plan):
                    pattern = SOURCE_SHARDS[s.source][0]
                    shard_name = pattern.format(part=1 + i % BENV2_PARTS)
                    if shard_name not in shards:
                        shards[shard_name] = h5py.File(tmp / shard_name, "w")
                    group = shards[shard_name].create_group(s.key)
                    group.create_dataset("image", data=image, **filters)
                    group.create_dataset("coords", data=coords, **filters)
                    group.attrs["crs"] = np.float32(32600 + 30 + i % 6)
                    stamp = np.nan if s.source.startswith("benv2") else 1.6e9 + 86400.0 * i
                    group.attrs["timestamp"] = np.float32(stamp)
                    group.attrs["labels"] = list(s.raw_labels)
                    main[s.key] = h5py.ExternalLink(shard_name, s.key)
        finally:
            for handle in shards.values():
                handle.close()
        samples = [s for s, _, _ in plan]
        table = pa.table({
            "key": [s.key for s in samples],
            "split": [s.split for s in samples],
            "labels": pa.array([list(s.raw_labels) for s in samples], pa.list_(pa.string())),
        })
        pq.write_table(table, tmp / METADATA_FILE)
        _write_topics(tmp, samples)
        (tmp / "SAMPLE.json").write_text(json.dumps(
            {"generator": "rsretrieve.datasets.sample", "version": SAMPLE_VERSION,
             "n_samples": n_samples, "seed": seed, "compression": compression,
             "train_fraction": train_fraction}, indent=2) + "\n")
    return out


def _write_topics(folder: Path, samples: list[GeneratedSample]) -> None:
    """queries.jsonl (BEIR style) and qrels/test.tsv for the test split."""
    corpus = [s for s in samples if s.split == "test"]
    present = [c for c in CLASSES if any(c in s.classes for s in corpus)]
    queries = queries_for(tuple(present))
    with open(folder / QUERIES_FILE, "w", encoding="utf-8") as handle:
        for qid, text in queries.items():
            handle.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (folder / QRELS_DIR).mkdir()
    lines = ["query-id\tcorpus-id\tscore"]
    for qid, cls in zip(queries, present):
        for s in corpus:
            if cls in s.classes:
                lines.append(f"{qid}\t{s.key}\t{2 if s.classes[0] == cls else 1}")
    (folder / QRELS_DIR / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _compression(name: str | None) -> dict[str, object]:
    if name in (None, "none"):
        return {}
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 4}
    if name == "lz4":
        import hdf5plugin

        return dict(hdf5plugin.LZ4())
    raise ConfigError(f"unknown compression '{name}'; use none, gzip or lz4")


def default_sample_path() -> Path:
    return cache_home() / "data" / f"crisislandmark-sample-v{SAMPLE_VERSION}"


def ensure_default_sample() -> Path:
    """The embedded default dataset: generated from its seed on first use, no download."""
    path = default_sample_path()
    if not (path / MAIN_FILE).is_file():
        generate_sample(path, overwrite=True)
    return path
