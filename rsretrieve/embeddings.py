"""Dataset batches -> band adapter -> encoder -> L2-normalised embeddings, resumable.

Each finished batch is saved atomically as ``batch-NNNNNN.npz`` in a work folder next
to the output; a rerun with the same plan (dataset, filters, pipeline, batch size)
skips the batches already there, so an interrupted run loses at most one batch.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.datasets.bands import SENSOR_NAMES, parse_band_selection
from rsretrieve.datasets.base import Batch, PatchDataset
from rsretrieve.datasets.readers import read_batches
from rsretrieve.datasets.sensors import BANDS, Sensor
from rsretrieve.encoders import Encoder, EncoderSpec, check_finite, load_encoder
from rsretrieve.config import check_precision
from rsretrieve.errors import ConfigError, DataError, ModelError, warn
from rsretrieve.io import atomic_path, write_json

DEFAULT_ADAPTERS: dict[str, str] = {"s2": "rgb", "s1": "sar", "rgb": "rgb"}


@dataclass
class ImagePipeline:
    """A band adapter per sensor in front of a shared encoder, or an encoder whose
    per-sensor towers hold their own adapters (``adapters`` is then empty).

    ``precision`` other than fp32 runs adapters and encoder under torch autocast. On CUDA,
    pixels go through pinned memory with a non-blocking copy, and an out-of-memory error
    halves the forward batch (with a warning) instead of ending the run: the planned batches,
    and so what is saved and resumed, stay as they are."""

    encoder: Encoder
    adapters: Mapping[Sensor, Any]
    adapter_names: Mapping[Sensor, str]
    precision: str = "fp32"
    forward_batch: int | None = None  # set once an out-of-memory error has halved the batch
    bands: Mapping[Sensor, tuple[str, ...]] = field(default_factory=dict)  # --bands: kept per sensor

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.precision != "fp32" and getattr(self.encoder, "device", None) is None:
            raise ConfigError(f"--precision {self.precision} needs a torch encoder; {self.encoder.spec.label()} has no precision to set")

    def embed(self, batch: Batch) -> np.ndarray:
        device = getattr(self.encoder, "device", None)
        if device is None:  # an encoder without torch (the random baseline): no torch at all
            return self.encoder.encode_images(batch.images, batch.sensor)
        import torch

        pixels = torch.from_numpy(batch.images)
        kept = self.bands.get(batch.sensor)
        if kept is not None:  # adapters and heads are built on the kept bands; models are told them
            pixels = pixels[:, [BANDS[batch.sensor].index(b) for b in kept]]
        if device.type == "cuda":
            pixels = pixels.pin_memory().to(device, non_blocking=True)
        parts = []
        start = 0
        while start < len(pixels):
            size = self.forward_batch or len(pixels)
            try:
                parts.append(self._forward(pixels[start : start + size], batch.sensor, device))
            except torch.cuda.OutOfMemoryError:
                if size == 1:
                    raise ModelError(f"CUDA out of memory on one {batch.sensor} image; use a smaller model or --device cpu") from None
                self.forward_batch = max(1, size // 2)
                torch.cuda.empty_cache()
                warn(f"CUDA out of memory at {size} images a forward pass; continuing with {self.forward_batch}")
                continue
            start += size
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _forward(self, pixels: Any, sensor: Sensor, device: Any) -> np.ndarray:
        import torch

        adapter = self.adapters.get(sensor)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            if getattr(adapter, "replaces_first_layer", False):
                return adapter.embed(self.encoder, pixels)
            if adapter is not None:
                pixels = adapter(pixels)
            if sensor in self.bands and not self.adapters:  # a model that takes bands itself: it is told which
                return self.encoder.encode_images(pixels, sensor, bands=self.bands[sensor])
            return self.encoder.encode_images(pixels, sensor)

    def describe(self) -> dict[str, Any]:
        described = {"encoder": self.encoder.describe(), "adapters": dict(self.adapter_names), "precision": self.precision}
        if self.bands:  # only then: the plans of indexes built without --bands stay as they were
            described["bands"] = self.band_report()
        return described

    def band_report(self) -> dict[str, dict[str, list[str]]]:
        """Per sensor, the bands kept by --bands and those the model fills in (fixed-band models)."""
        fills = getattr(self.encoder, "model_bands", None) if not self.adapters else None
        return {s: {"kept": list(kept), "filled": [b for b in (fills or {}).get(s, ()) if b not in kept]}
                for s, kept in self.bands.items()}


def check_sensors(spec: EncoderSpec, sensors: Sequence[Sensor]) -> None:
    """A model with inputs for some sensors only (``sensors`` on its class) refuses the others
    before it loads: never a silent skip of a sensor's patches."""
    from rsretrieve.encoders import ENCODERS

    takes = getattr(ENCODERS.get(spec.backend), "sensors", None)
    if takes is None:
        return
    other = [s for s in sensors if s not in takes]
    if other:
        names = " and ".join(SENSOR_NAMES.get(s, s) for s in takes)
        flag = f"--sensor {takes[0]}" if len(takes) == 1 else f"--sensor with one of {', '.join(takes)}"
        raise ConfigError(f"{spec.label()} is a {names} model: it has no input for {', '.join(SENSOR_NAMES.get(s, s) for s in other)} "
                          f"patches; index with {flag}")


def check_band_input(spec: EncoderSpec) -> None:
    """--bands needs a model that can take a band subset: any model behind an adapter or head
    (built on the kept bands), or one whose class says how it takes bands (``band_input``:
    ``wavelength`` models take the subset, ``fixed`` ones fill the rest)."""
    from rsretrieve.encoders import ENCODERS

    cls = ENCODERS.get(spec.backend)
    if getattr(cls, "adapters_bundled", False) and getattr(cls, "band_input", None) is None:
        raise ConfigError(f"--bands: {spec.label()} holds its own band adapters and takes no band subset; "
                          "use an open_clip model with an adapter or head, a wavelength model (dofa-clip) or llama3-ms-clip")


def build_pipeline(
    spec: EncoderSpec,
    adapter_names: Mapping[Sensor, str | None] | None = None,
    sensors: Sequence[Sensor] = ("s2", "s1"),
    device: str | None = None,
    precision: str = "fp32",
    bands: str | None = None,
    dataset_name: str = "the dataset",
) -> ImagePipeline:
    """Adapter names are checked before the encoder loads; None means the default one.
    ``bands`` (``--bands B02,B03,B04,B08``) keeps those bands: adapters and heads are built on
    them, wavelength models take them, fixed-band models fill the rest in their normalised
    space; a model that can do neither refuses."""
    from rsretrieve.encoders import ENCODERS

    check_precision(precision)
    check_sensors(spec, sensors)
    kept = {} if bands is None else parse_band_selection(bands, sensors, dataset_name)
    if kept:
        check_band_input(spec)
    chosen = {s: (adapter_names or {}).get(s) for s in sensors}
    check_adapter_names(chosen.values())
    if getattr(ENCODERS.get(spec.backend), "adapters_bundled", False):
        given = [f"--{s}-adapter {n}" for s, n in chosen.items() if n is not None]
        if given:
            raise ConfigError(
                f"encoder {spec.model} holds its own band adapters per sensor; drop {', '.join(given)}"
            )
        return ImagePipeline(load_encoder(spec, device), {}, {s: "bundled" for s in sensors}, precision, bands=kept)
    names = {s: n or DEFAULT_ADAPTERS[s] for s, n in chosen.items()}
    adapters = {s: _adapter(name, s, kept) for s, name in names.items()}  # before the encoder loads: errors come first
    encoder = load_encoder(spec, device)
    for s, adapter in adapters.items():
        adapters[s] = _on_device(adapter, getattr(encoder, "device", None))
        if hasattr(adapter, "bind"):  # a head: built from the encoder's own first layer
            adapter.bind(encoder)
    return ImagePipeline(encoder, adapters, names, precision, bands=kept)


def check_adapter_names(names: Iterable[str | None]) -> None:
    """Each named adapter is registered (or found by its entry point): a typo or a plugin
    not installed fails before any model code is imported."""
    from rsretrieve.adapters import ADAPTERS, parse_adapter

    for name in names:
        if name is not None:
            ADAPTERS.get(parse_adapter(name)[0])


def _adapter(name: str, sensor: Sensor, kept: Mapping[Sensor, tuple[str, ...]]) -> Any:
    """Adapter ``name`` for the sensor's bands (those --bands kept); one it cannot build on
    them names what --bands left."""
    from rsretrieve.adapters import build_adapter

    try:
        return build_adapter(name, kept.get(sensor, BANDS[sensor]))
    except ConfigError as exc:
        if sensor not in kept:
            raise
        raise ConfigError(f"{exc} (--bands kept {', '.join(kept[sensor])} of {SENSOR_NAMES.get(sensor, sensor)}); keep "
                          "the bands it needs, or choose an adapter or head that takes these") from None


def _on_device(adapter: Any, device: Any) -> Any:
    """A torch adapter moves to the encoder's device, so that pixels cross to a GPU once."""
    return adapter.to(device) if device is not None and hasattr(adapter, "to") else adapter


@dataclass(frozen=True)
class Embedded:
    keys: list[str]
    sensors: list[Sensor]
    embeddings: np.ndarray
    nonfinite_pixels: int
    nonfinite_by_key: dict[str, int]  # samples with NaN/inf pixels -> how many
    locations: np.ndarray  # (N, 2) centre lon/lat degrees, NaN where unknown


def plan_id(dataset: PatchDataset, pipeline: ImagePipeline, batch_size: int) -> str:
    """Hash of everything that determines the embeddings; equal ids mean reusable work."""
    plan = {
        "dataset": dataset.fingerprint(),
        "split": dataset.split,
        "sensors": list(dataset.sensors),
        "limit": dataset.limit,
        "strict": dataset.strict,
        "shard": dataset.shard,
        "pipeline": pipeline.describe(),
        "batch_size": batch_size,
    }
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def embed_dataset(
    dataset: PatchDataset,
    pipeline: ImagePipeline,
    work_dir: Path,
    batch_size: int,
    plan: str,
    on_batch: Callable[[int], None] | None = None,
    readers: int = 1,
) -> Embedded:
    """Embed every selected sample, reusing batches already saved under ``work_dir``; the
    batches still to do are read by ``readers`` processes (``datasets.readers``)."""
    batches = dataset.plan_batches(batch_size)
    _prepare_work_dir(work_dir, plan)
    todo = [i for i in range(len(batches)) if not _saved_batch_ok(_batch_path(work_dir, i), batches[i])]
    if on_batch:
        on_batch(sum(len(b) for b in batches) - sum(len(batches[i]) for i in todo))
    for index, batch in zip(todo, read_batches(dataset, [batches[i] for i in todo], readers)):
        vectors = check_finite(pipeline.embed(batch), pipeline.encoder, batch.keys, "key")
        _save_batch(_batch_path(work_dir, index), batch, vectors)
        if on_batch:
            on_batch(len(batch.keys))
    return _collect(work_dir, batches)


WORK_FILE = re.compile(r"^(plan\.json|batch-\d{6}\.npz|\.batch-\d{6}\.npz\..*\.tmp|\.plan\.json\..*\.tmp)$")


def is_work_dir(path: Path) -> bool:
    """A partial build folder rsretrieve made: plan.json and batch files, nothing else."""
    if not path.is_dir() or not (path / "plan.json").is_file():
        return False
    return all(WORK_FILE.match(p.name) for p in path.iterdir())


def _prepare_work_dir(work_dir: Path, plan: str) -> None:
    """Resume the partial build of the same plan; start over from one of another plan. A folder
    of that name that rsretrieve did not make is refused, never deleted."""
    plan_file = work_dir / "plan.json"
    if work_dir.exists() or work_dir.is_symlink():
        if not is_work_dir(work_dir) or work_dir.is_symlink():
            raise DataError(f"{work_dir} exists and is not a partial build of rsretrieve; move it away or choose another --out")
        try:
            same = json.loads(plan_file.read_text())["plan_id"] == plan
        except (OSError, ValueError, KeyError, TypeError):
            same = False
        if same:
            return
        warn(f"{work_dir} holds a partial build of another plan (dataset, encoder or settings changed); starting over")
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    write_json(plan_file, {"plan_id": plan})


def _batch_path(work_dir: Path, index: int) -> Path:
    return work_dir / f"batch-{index:06d}.npz"


def _saved_batch_ok(path: Path, planned: Sequence[Any]) -> bool:
    """A saved batch that loads and holds the planned keys; a damaged one is discarded (with a
    warning) so that the batch is embedded again."""
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as saved:
            ok = saved["keys"].tolist() == [s.key for s in planned] and saved["embeddings"].shape[0] == len(planned)
            saved["nonfinite_per_sample"]
            ok = ok and saved["locations"].shape == (len(planned), 2)
    except Exception:  # noqa: BLE001 - zip, npy and key errors alike mean a damaged file
        ok = False
    if not ok:
        warn(f"{path} is damaged or stale; discarded, its batch is embedded again")
        path.unlink()
    return ok


def _save_batch(path: Path, batch: Batch, vectors: np.ndarray) -> None:
    buffer = io.BytesIO()
    counts = batch.nonfinite_per_sample or (0,) * len(batch.keys)
    locations = batch.locations if batch.locations is not None else np.full((len(batch.keys), 2), np.nan)
    np.savez(buffer, embeddings=vectors, keys=np.array(batch.keys), nonfinite=np.int64(batch.nonfinite),
             nonfinite_per_sample=np.array(counts, np.int64), locations=np.asarray(locations, np.float64))
    with atomic_path(path, need=buffer.getbuffer().nbytes) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _collect(work_dir: Path, batches: Sequence[Sequence[Any]]) -> Embedded:
    keys: list[str] = []
    sensors: list[Sensor] = []
    parts: list[np.ndarray] = []
    places: list[np.ndarray] = []
    nonfinite = 0
    by_key: dict[str, int] = {}
    for index, planned in enumerate(batches):
        path = _batch_path(work_dir, index)
        with np.load(path, allow_pickle=False) as saved:
            stored = saved["keys"].tolist()
            if stored != [s.key for s in planned]:
                raise DataError(f"{path}: saved keys differ from the plan; delete {work_dir} and rerun")
            parts.append(saved["embeddings"])
            places.append(saved["locations"])
            nonfinite += int(saved["nonfinite"])
            by_key.update((k, int(n)) for k, n in zip(stored, saved["nonfinite_per_sample"].tolist()) if n)
        keys.extend(stored)
        sensors.extend(s.sensor for s in planned)
    return Embedded(keys, sensors, np.concatenate(parts, dtype=np.float32), nonfinite, by_key,  # one copy, not two
                    np.concatenate(places) if places else np.empty((0, 2)))
