"""Index jobs as library calls: one index, one shard of it, or all shards on an engine.

``run_index_job`` is what ``rsretrieve index`` runs; ``run_sharded`` runs N shards (in this
process, or as Dask tasks in worker processes when the ``dask`` extra is installed) and
merges them. Shard folders are ordinary, resumable index folders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsretrieve.config import IndexJob
from rsretrieve.errors import ConfigError

ENGINES = ("local", "dask")


def open_job_dataset(job: IndexJob, on_stage: Callable[[str], None] | None = None) -> Any:
    from rsretrieve.datasets import dataset_class, open_dataset
    from rsretrieve.datasets.base import PatchDataset
    from rsretrieve.datasets.fixtures.crisislandmark import default_sample_path, ensure_default_sample
    from rsretrieve.datasets.sensors import parse_sensor_filter

    if not job.data and on_stage and not (default_sample_path() / "crisislandmark.h5").is_file():
        on_stage(f"generating the embedded sample in {default_sample_path()} (first run only, a few seconds)")
    if not issubclass(dataset_class(job.dataset), PatchDataset):
        raise ConfigError(f"dataset format '{job.dataset}' is not an image corpus: index its captions with --what captions")
    root = Path(job.data) if job.data else ensure_default_sample()
    return open_dataset(job.dataset, root, split=job.split, sensors=parse_sensor_filter(job.sensor),
                        limit=job.limit, strict=job.strict)


def run_index_job(
    job: IndexJob,
    out: Path,
    force: bool = False,
    device: str | None = None,
    shard: tuple[int, int] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Open the dataset, build the pipeline and write (or reuse) the index folder ``out``;
    ``on_stage`` hears of the slow steps that come before the first batch."""
    from rsretrieve.embeddings import build_pipeline
    from rsretrieve.zoo import resolve_model
    from rsretrieve.index import IndexSettings, build_index

    stage = on_stage or (lambda message: None)
    dataset = open_job_dataset(job, stage)
    if shard is not None:
        dataset.take_shard(*shard)
    settings = IndexSettings(kind=job.index, nlist=job.nlist, nprobe=job.nprobe, hnsw_m=job.hnsw_m, ef_search=job.ef_search)
    spec = resolve_model(job.model, job.pretrained, job.seed)
    stage(f"loading encoder {spec.label()}")
    pipeline = build_pipeline(spec, {"s2": job.s2_adapter, "s1": job.s1_adapter}, dataset.sensors, device)
    if job.verify:
        stage("hashing every shard's bytes (--verify)")
    if on_start:
        on_start(len(dataset.samples))
    return build_index(dataset, pipeline, out, job.batch_size or 32, settings, force, on_batch=on_batch, verify=job.verify)


def default_index(
    folder: Path, limit: int | None = None, force: bool = False, on_stage: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None, on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The embedded sample indexed with the shipped default model at ``folder`` (reused when current)."""
    return run_index_job(IndexJob(limit=limit), folder, force, on_start=on_start, on_batch=on_batch, on_stage=on_stage)


def shard_dir(out: Path, index: int, count: int) -> Path:
    return Path(f"{out}.shards") / f"shard-{index}-of-{count}"


def _shard_task(job: dict[str, Any], out: str, index: int, count: int, force: bool) -> str:
    """Top-level (picklable) task for engines: index one shard, return its folder."""
    target = shard_dir(Path(out), index, count)
    run_index_job(IndexJob(**job), target, force=force, shard=(index, count))
    return str(target)


def run_sharded(job: IndexJob, out: Path, count: int, engine: str = "local", workers: int | None = None,
                force: bool = False) -> dict[str, Any]:
    """Index ``count`` shards (resumable, each its own folder) and merge them into ``out``."""
    from rsretrieve.index import merge_indexes

    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got '{engine}'")
    if count < 1:
        raise ConfigError(f"--shards must be at least 1, got {count}")
    args = [(dataclasses.asdict(job), str(out), i, count, force) for i in range(count)]
    if engine == "dask":
        try:
            import dask
        except ImportError as exc:
            raise ConfigError("--engine dask needs `pip install 'rsretrieve[dask]'`") from exc
        tasks = [dask.delayed(_shard_task)(*a) for a in args]
        folders = dask.compute(*tasks, scheduler="processes", num_workers=workers or min(count, 2))
    else:
        folders = [_shard_task(*a) for a in args]
    return merge_indexes([Path(f) for f in folders], out, force=force)
