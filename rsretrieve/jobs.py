"""Index jobs as library calls: one index, one shard of it, or all shards on an engine.

``run_index_job`` is what ``rsretrieve index`` runs; ``run_sharded`` runs N shards (in this
process, or as Dask tasks in worker processes when the ``dask`` extra is installed) and
merges them. Shard folders are ordinary, resumable index folders.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsretrieve.config import IndexJob
from rsretrieve.errors import ConfigError, DataError, RsRetrieveError, first_line
from rsretrieve.io import INDEX, check_replaceable, check_writable, made_by_rsretrieve, write_text
from rsretrieve.locks import output_lock

ENGINES = ("local", "dask")
ALLOWED_FAILURES = 3  # deaths of a shard's worker before dask gives the shard up


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
                        limit=job.limit, strict=bool(job.strict))


def run_index_job(
    job: IndexJob,
    out: Path,
    force: bool = False,
    device: str | None = None,
    shard: tuple[int, int] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    replace_stale: bool = False,
) -> dict[str, Any]:
    """Open the dataset, build the pipeline and write (or reuse) the index folder ``out``;
    ``on_stage`` hears of the slow steps that come before the first batch. ``replace_stale``
    rebuilds an index that is not current (one of rsretrieve's own) instead of refusing it."""
    from rsretrieve.datasets.readers import check_readers
    from rsretrieve.index import build_index

    stage = on_stage or (lambda message: None)
    check_writable(Path(out), folder=True)  # before the dataset is read or the encoder loads
    with output_lock(Path(out)):
        dataset = open_job_dataset(job, stage)
        if shard is not None:
            dataset.take_shard(*shard)
        dataset.preflight()
        readers = check_readers(job.readers)
        pipeline = job_pipeline(job, dataset.sensors, device)
        if job.verify:
            stage("hashing every shard's bytes (--verify)")
        if on_start:
            on_start(len(dataset.samples))
        return build_index(dataset, pipeline, out, batch_size(job, pipeline), index_settings(job), force,
                           on_batch=on_batch, verify=job.verify, readers=readers, replace_stale=replace_stale)


def job_pipeline(job: IndexJob, sensors: Any, device: str | None) -> Any:
    """The job's encoder (resolved from --model) behind its band adapters, in its precision."""
    from rsretrieve.embeddings import build_pipeline, check_adapter_names
    from rsretrieve.zoo import resolve_model

    check_adapter_names((job.s2_adapter, job.s1_adapter))  # resolving an architecture imports open_clip (seconds)
    spec = resolve_model(job.model, job.pretrained, job.seed)
    return build_pipeline(spec, {"s2": job.s2_adapter, "s1": job.s1_adapter}, sensors, device, job.precision,
                          job.bands, str(job.data or "the embedded sample"))


def batch_size(job: IndexJob, pipeline: Any) -> int:
    """--batch-size, or 32 images on a CPU and 256 on CUDA, where small batches leave the GPU waiting."""
    if job.batch_size is not None:
        return job.batch_size
    device = getattr(pipeline.encoder, "device", None)
    return 256 if device is not None and device.type == "cuda" else 32


def index_settings(job: IndexJob) -> Any:
    from rsretrieve.index import IndexSettings

    return IndexSettings(kind=job.index, nlist=job.nlist, nprobe=job.nprobe, hnsw_m=job.hnsw_m, ef_search=job.ef_search)


def default_index(
    folder: Path, limit: int | None = None, force: bool = False, on_stage: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None, on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """The embedded sample indexed with the shipped default model at ``folder``: reused when
    current, rebuilt when not (new shipped weights), since that index is rsretrieve's own."""
    return run_index_job(IndexJob(limit=limit), folder, force, on_start=on_start, on_batch=on_batch, on_stage=on_stage,
                         replace_stale=True)


def shard_dir(out: Path, index: int, count: int) -> Path:
    return Path(f"{out}.shards") / f"shard-{index}-of-{count}"


def _shard_task(job: dict[str, Any], out: str, index: int, count: int, force: bool,
                device: str | None = None, devices: list[str] | None = None) -> str:
    """Top-level (picklable) task for engines: index one shard, return its folder. A rerun of
    the task (a worker died, dask rescheduled it) resumes from the shard's saved batches.
    With ``devices``, a LocalCluster worker named i uses ``devices[i]``. Whatever fails
    reaches the client as one line naming the shard and the worker; an unexpected error's
    traceback is written to a log file beside the shards, which the line names."""
    worker = _worker()
    where = f"shard {index} of {count} ({'worker ' + worker.address if worker else 'here'})"
    data = job.get("data")
    if data and not Path(data).exists():
        raise DataError(f"{where}: the dataset {data} is not there on that machine; start the workers where this "
                        "path exists (a shared file system), or give a path they all see")
    if devices and worker is not None:
        device = devices[int(worker.name) % len(devices)]
    target = shard_dir(Path(out), index, count)
    try:
        run_index_job(IndexJob(**job), target, force=force, device=device, shard=(index, count))
    except RsRetrieveError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a worker's traceback stays in its log, the user gets one line
        import traceback

        log = Path(f"{out}.shards") / f"shard-{index}-of-{count}.log"
        write_text(log, f"{where}\n{traceback.format_exc()}")
        raise DataError(f"{where} failed: {type(exc).__name__}: {first_line(exc)} (traceback in {log})") from None
    return str(target)


def _worker() -> Any:
    """The dask worker running this task, or None outside one (the local engine)."""
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def client_paths(job: IndexJob, out: Path) -> tuple[IndexJob, Path]:
    """Every path of a job made absolute here, on the client, before it is sent to workers
    that run in other folders: the dataset, a local model folder or weights file, and --out
    (so that shard folders land under the --out the user typed, not in a worker's folder)."""
    def absolute(value: str | None) -> str | None:
        return os.path.abspath(value) if value and os.path.exists(value) else value

    job = dataclasses.replace(job, data=os.path.abspath(job.data) if job.data else None,
                              model=absolute(job.model), pretrained=absolute(job.pretrained))
    return job, Path(os.path.abspath(out))


def engine_options(shards: int | None, engine: str, scheduler: str | None, workers: int | None,
                   devices: str | None, shard: str | None = None) -> list[str] | None:
    """The --devices list; options of --shards given without it are an error, not ignored,
    and so is --shard I/N beside --shards N (one shard by hand, or all of them: not both)."""
    if shards is not None and shard is not None:
        raise ConfigError(f"--shard {shard} indexes one shard of a job run piece by piece (merge them later); "
                          f"--shards {shards} runs every shard and merges them: give one of the two")
    if shards is None:
        given = [name for name, value in (("--engine", engine != "local"), ("--scheduler", scheduler),
                                          ("--workers", workers), ("--devices", devices)) if value]
        if given:
            raise ConfigError(f"{', '.join(given)} apply to --shards N (a job split into shards); add --shards")
    if devices is None:
        return None
    parsed = [d.strip() for d in devices.split(",") if d.strip()]
    if not parsed:
        raise ConfigError(f"--devices must list devices, e.g. cuda:0,cuda:1; got '{devices}'")
    return parsed


def run_sharded(job: IndexJob, out: Path, count: int, engine: str = "local", workers: int | None = None,
                force: bool = False, scheduler: str | None = None, devices: list[str] | None = None,
                device: str | None = None) -> dict[str, Any]:
    """Index ``count`` shards (resumable, each its own folder under ``OUT.shards``) and merge
    them into ``out``. ``engine`` dask runs them as tasks of a dask.distributed cluster: the
    one at ``scheduler``, or a LocalCluster of ``workers`` processes started here."""
    from rsretrieve.index import damaged_error, damaged_files, merge_indexes, read_manifest

    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got '{engine}'")
    if count < 1:
        raise ConfigError(f"--shards must be at least 1, got {count}")
    if engine == "local":
        for name, value in (("--scheduler", scheduler), ("--devices", devices), ("--workers", workers)):
            if value:
                raise ConfigError(f"{name} needs --engine dask: the local engine runs the shards one after another here")
    if devices and (scheduler or device or workers):
        raise ConfigError("--devices starts one local worker per device; with --scheduler, --device or --workers, "
                          "give neither (a remote worker uses the GPU its launcher gave it)")
    if scheduler and workers:
        raise ConfigError("--workers sizes the LocalCluster started here; the cluster at --scheduler has its own workers")
    job, out = client_paths(job, Path(out))
    check_writable(out, folder=True)
    with output_lock(out):
        if out.exists() and not force:
            existing = read_manifest(out)
            if existing.get("plan_id") == sharded_plan_id(job, count, device) and existing.get("index") == dataclasses.asdict(index_settings(job)):
                damage = damaged_files(out, existing, job.verify)
                if damage:
                    raise damaged_error(out, damage)
                return {**existing, "reused": True}
            raise DataError(f"{out} was built differently (dataset, encoder or settings changed); pass --force to replace it")
        if force:
            check_replaceable(out, INDEX)
        check_shard_count(job, count)
        if engine == "dask" and job.readers is None:
            job = dataclasses.replace(job, readers=1)  # each dask worker is a reader already
        args = [(dataclasses.asdict(job), str(out), i, count, force, device, devices) for i in range(count)]
        if engine == "dask":
            folders = _run_on_dask(args, scheduler, workers, len(devices) if devices else None, bool(device and scheduler
                                                                                                      and device.startswith("cuda")))
        else:
            folders = [_shard_task(*a) for a in args]
        manifest = merge_indexes([Path(f) for f in folders], out, force=force)
        _remove_shards(out, [Path(f) for f in folders])
        return manifest


def check_shard_count(job: IndexJob, count: int) -> None:
    """Refuse, before any shard is submitted, more shards than samples: a shard without a
    sample has nothing to embed (on a cluster it failed remotely, leaving empty folders)."""
    selected = len(open_job_dataset(job).samples)
    if count > selected:
        limit = f" (--limit {job.limit})" if job.limit else ""
        raise ConfigError(f"--shards {count} is more than the {selected} samples selected{limit}: every shard needs "
                          f"at least one; give --shards {max(selected, 1)} or fewer")


def sharded_plan_id(job: IndexJob, count: int, device: str | None = None) -> str:
    """The plan id that merging ``count`` shards of ``job`` gives (as ``merge_indexes`` writes
    it): what tells a merged index that is current without embedding anything. Loads the
    encoder once, to hash its weights, and reads the dataset's metadata once for all shards."""
    from rsretrieve.datasets.readers import check_readers
    from rsretrieve.embeddings import plan_id
    from rsretrieve.index import merged_plan_id

    check_readers(job.readers)
    whole = open_job_dataset(job)
    whole.fingerprint()  # computed once, shared by the shards' copies
    shards = [copy.copy(whole) for _ in range(count)]
    for index, shard in enumerate(shards):
        shard.take_shard(index, count)  # rebinds its own samples; the whole's stay as they are
    pipeline = job_pipeline(job, whole.sensors, device)
    return merged_plan_id([plan_id(shard, pipeline, batch_size(job, pipeline)) for shard in shards])


def _remove_shards(out: Path, folders: list[Path]) -> None:
    """Once merged, the shard folders (a second copy of every vector) go; so does OUT.shards
    when nothing else is in it. Only index folders rsretrieve made are removed."""
    for folder in folders:
        if made_by_rsretrieve(folder, INDEX):
            shutil.rmtree(folder)
    parent = Path(f"{out}.shards")
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()


def _check_listening(scheduler: str) -> None:
    """A scheduler address where nothing listens is refused at once (a mistyped port), not
    after dask's 20 s of connection retries; a slow or filtered host is left to dask."""
    import socket
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(scheduler if "://" in scheduler else f"tcp://{scheduler}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return
    if parts.scheme != "tcp" or not host or not port:
        return
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        raise ConfigError(f"--scheduler {scheduler}: cannot reach a dask scheduler there (nothing listens on "
                          f"{host}:{port}; is the scheduler started, and the port right?)") from None
    except OSError:
        return


def _run_on_dask(args: list[tuple[Any, ...]], scheduler: str | None, workers: int | None,
                 per_device: int | None, one_gpu_each: bool) -> list[str]:
    """Shard tasks on a dask.distributed cluster; results in shard order. A task whose worker
    dies is rescheduled by dask; it then resumes from the batches that shard saved."""
    try:
        import dask
        from distributed import Client, LocalCluster
        from distributed.scheduler import KilledWorker
    except ImportError as exc:
        raise ConfigError("--engine dask needs `pip install 'rsretrieve[dask]'` (dask and distributed)") from exc
    cluster = None
    # Worker processes that may fork reader processes of their own (--readers above 1).
    with dask.config.set({"distributed.worker.daemon": False, "distributed.scheduler.allowed-failures": ALLOWED_FAILURES}):
        if scheduler:
            _check_listening(scheduler)
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise ConfigError(f"--scheduler {scheduler}: cannot reach a dask scheduler there ({exc})") from None
        else:
            size = per_device or workers or min(len(args), 2)
            cluster = LocalCluster(n_workers=size, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   protocol="tcp", dashboard_address=None)
            client = Client(cluster)
        try:
            # One GPU per task: remote workers started with `--resources GPU=1` take one shard at a time.
            resources = {"GPU": 1} if one_gpu_each else None
            futures = [client.submit(_shard_task, *a, key=f"rsretrieve-shard-{a[2]}-of-{len(args)}", pure=False,
                                     resources=resources) for a in args]
            return list(client.gather(futures))
        except KilledWorker as exc:
            raise DataError(f"a shard's worker died {ALLOWED_FAILURES} times ({exc}); rerun to resume from the saved batches") from None
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
