"""Typer CLI: a thin layer over the library; every command maps to library calls."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from typer.core import TyperGroup

from rsretrieve import __version__
from rsretrieve.cli import render
from rsretrieve.errors import RsRetrieveError, RsRetrieveWarning, Terminated, sigterm_raises
from rsretrieve.progress import reporting, stage



class _Stdout(Console):
    """Standard output. Sent to a pipe or a file, a table keeps every column whole: rich would
    fit it to a terminal's width (80 columns without one), folding away the last columns of a
    caption table (lon, lat). ``COLUMNS`` still sets the width."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self.is_terminal or os.environ.get("COLUMNS"):
            return size
        return ConsoleDimensions(max(size.width, PIPED_WIDTH), size.height)

    @size.setter
    def size(self, value: tuple[int, int]) -> None:
        Console.size.fset(self, value)  # type: ignore[attr-defined]


PIPED_WIDTH = 240
err = Console(stderr=True, soft_wrap=True)
out = _Stdout()


class _Group(TyperGroup):
    """Turn user errors into one red line and exit code 2; never a traceback."""

    def invoke(self, ctx: typer.Context) -> object:
        import warnings

        shown = warnings.showwarning

        def show(message, category, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if issubclass(category, RsRetrieveWarning):
                err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
            else:
                shown(message, category, *args, **kwargs)

        warnings.showwarning = show
        try:
            with sigterm_raises(), reporting(render.reporter(err)):
                return super().invoke(ctx)
        except RsRetrieveError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted; rerun the same command to resume")
            raise typer.Exit(130) from None
        except Terminated:
            err.print("terminated (SIGTERM); rerun the same command to resume")
            raise typer.Exit(143) from None
        except OSError as exc:  # a write that no atomic writer wrapped: still one line when the disk is at fault
            from rsretrieve.io import disk_fault, disk_message

            reason = disk_fault(exc)
            if reason is None:
                raise
            where = Path(exc.filename) if exc.filename else None
            err.print(f"[bold red]error:[/] {escape(disk_message(where, reason, atomic=False))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        finally:
            warnings.showwarning = shown


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[rgb]" is a default shown, not a markup tag
    help="Benchmark text-to-remote-sensing-image retrieval beyond RGB (S1 SAR, S2 multispectral).",
)

# Shared option types.
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Dataset folder (default: the embedded sample).")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Zoo card (rsretrieve models), open_clip architecture, hf-hub:org/name or model folder [the shipped default].")]
PretrainedOpt = Annotated[Optional[str], typer.Option("--pretrained", help="Weights file (replaces a card's), or an open_clip tag; omit for random init of an architecture.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of random initialisation.")]
MetricsOpt = Annotated[Optional[list[str]], typer.Option("--metrics", "-m", help="Metrics, e.g. ndcg@10,map@100 (repeatable).")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="torch device (default: cuda if available).")]
# search takes the encoder its index was built with: these only check it, so they are not offered.
CheckedModelOpt = Annotated[Optional[str], typer.Option("--model", hidden=True, help="Checked against the index's encoder.")]
CheckedPretrainedOpt = Annotated[Optional[str], typer.Option("--pretrained", hidden=True, help="Checked against the index's weights.")]
CheckedSeedOpt = Annotated[int, typer.Option("--seed", hidden=True, help="Checked against the index's seed.")]


def _version(value: bool) -> None:
    if value:
        out.print(f"rsretrieve {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    """rsretrieve command line."""


def _spec(model: str | None, pretrained: str | None, seed: int | None):  # noqa: ANN202 - EncoderSpec
    from rsretrieve.zoo import resolve_model

    return resolve_model(model, pretrained, seed or 0)


def _requested(model: str | None, pretrained: str | None, seed: int | None):  # noqa: ANN202 - EncoderSpec | None
    """The encoder options given to search/eval, to check against the index (None: none given)."""
    return _spec(model, pretrained, seed) if model or pretrained else None


@app.command()
def sample(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create.")],
    n_samples: Annotated[Optional[int], typer.Option("--n-samples", help="Number of samples (S1 and S2 together) [480].")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    compression: Annotated[str, typer.Option("--compression", help="Shard compression: none, gzip, or lz4, zstd, blosc (filters of hdf5plugin).")] = "none",
    fmt: Annotated[str, typer.Option("--format", help="crisislandmark, git10m, bigearthnet-txt or rs-captions.")] = "crisislandmark",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing folder.")] = False,
) -> None:
    """Write a seeded sample dataset: CrisisLandMark layout (default), Git-10M, BigEarthNet.txt or caption-benchmark fixtures."""
    from rsretrieve.datasets.fixtures import write_fixture

    n_samples = 480 if n_samples is None else n_samples
    path = write_fixture(fmt, out_dir, n_samples, seed, force, compression)
    out.print(f"wrote {n_samples} samples to {path}")


@app.command()
def index(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Index folder to write.")],
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML/JSON job (configs/index/); options below override it.")] = None,
    data: DataOpt = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset format [crisislandmark].")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="train or test (alias corpus) [test].")] = None,
    sensor: Annotated[Optional[str], typer.Option("--sensor", help="s1, s2 or all [all].")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Index only the first N samples.")] = None,
    strict: Annotated[Optional[bool], typer.Option("--strict/--lenient", help="--strict refuses bad input: an image with NaN/inf pixels, a caption row that is empty or not UTF-8. [lenient: such pixels are replaced, such rows skipped, and both counted]")] = None,
    verify: Annotated[Optional[bool], typer.Option("--verify", help="Also hash every shard's bytes to tell whether an existing index is current.")] = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of random initialisation [0].")] = None,
    s2_adapter: Annotated[Optional[str], typer.Option("--s2-adapter", help="Band adapter or head for Sentinel-2 [rgb]; NAME:key=value for parameters (patch-embed:init=mean).")] = None,
    bands: Annotated[Optional[str], typer.Option("--bands", help="Keep only these bands, by name or wavelength (B02,B03,B04,B08; VV); rsretrieve list bands.")] = None,
    s1_adapter: Annotated[Optional[str], typer.Option("--s1-adapter", help="Band adapter for Sentinel-1 [sar].")] = None,
    kind: Annotated[Optional[str], typer.Option("--index-type", help="FAISS index type: flat (exact), ivf or hnsw [flat].")] = None,
    old_kind: Annotated[Optional[str], typer.Option("--index", hidden=True, help="Old name of --index-type (--index names an index folder elsewhere).")] = None,
    nlist: Annotated[Optional[int], typer.Option("--nlist", help="IVF cells [~4 sqrt(N)].")] = None,
    nprobe: Annotated[Optional[int], typer.Option("--nprobe", help="IVF cells searched per query [16].")] = None,
    hnsw_m: Annotated[Optional[int], typer.Option("--hnsw-m", help="HNSW links per node [32].")] = None,
    ef_search: Annotated[Optional[int], typer.Option("--ef-search", help="HNSW candidates per query [128].")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Samples per batch [32, 256 on CUDA; captions 1024].")] = None,
    readers: Annotated[Optional[int], typer.Option("--readers", help="Reader processes; 1 reads in this process [the available cores, at most 8].")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="Image encoding precision: fp32, or bf16 / fp16 under autocast [fp32].")] = None,
    what: Annotated[Optional[str], typer.Option("--what", help="images, or captions (Git-10M) [images].")] = None,
    pq: Annotated[Optional[int], typer.Option("--pq", help="Captions: product-quantise IVF vectors into M codes.")] = None,
    sq8: Annotated[Optional[bool], typer.Option("--sq8", help="Captions: 8-bit scalar-quantised vectors.")] = None,
    train_size: Annotated[Optional[int], typer.Option("--train-size", help="Captions: vectors that train IVF/PQ [100000].")] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Index only shard I/N (0-based) of the samples; merge later.")] = None,
    shards: Annotated[Optional[int], typer.Option("--shards", help="Index N shards, then merge them into --out.")] = None,
    engine: Annotated[str, typer.Option("--engine", help="How --shards run: local (one after another), or dask (a dask.distributed cluster).")] = "local",
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address (tcp://HOST:8786); none: a LocalCluster here.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Worker processes of the LocalCluster [min(N, 2)].")] = None,
    devices: Annotated[Optional[str], typer.Option("--devices", help="One LocalCluster worker per device, e.g. cuda:0,cuda:1.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an index built differently.")] = False,
    device: DeviceOpt = None,
) -> None:
    """Embed a dataset split with encoder + band adapters (or Git-10M captions) into an index folder."""
    from rsretrieve.config import IndexJob, renamed_option
    from rsretrieve.jobs import engine_options, run_index_job, run_sharded

    job = IndexJob.load(config, {
        "data": None if data is None else str(data), "dataset": dataset, "split": split, "sensor": sensor,
        "limit": limit, "strict": strict, "verify": verify, "model": model, "pretrained": pretrained, "seed": seed,
        "s2_adapter": s2_adapter, "s1_adapter": s1_adapter, "bands": bands,
        "index": renamed_option("index --index", "--index-type", old_kind, kind), "nlist": nlist,
        "nprobe": nprobe, "hnsw_m": hnsw_m, "ef_search": ef_search, "batch_size": batch_size, "readers": readers, "precision": precision, "what": what, "pq": pq, "sq8": sq8, "train_size": train_size,
    })
    if job.what == "captions":
        from rsretrieve.captions import run_caption_job

        with render.progress(err, "captions") as bar:
            caption_manifest = run_caption_job(job, out_dir, force, device, on_start=bar.start, on_batch=bar, sharding={
                "--shard": shard, "--shards": shards, "--engine": None if engine == "local" else engine,
                "--scheduler": scheduler, "--workers": workers, "--devices": devices})
        render.caption_index_summary(out, out_dir, caption_manifest)
        return
    device_list = engine_options(shards, engine, scheduler, workers, devices, shard)
    if shards is not None:
        manifest = run_sharded(job, out_dir, shards, engine, workers, force, scheduler, device_list, device)
    else:
        with render.progress(err, "embedding") as bar:
            manifest = run_index_job(job, out_dir, force, device, _parse_shard(shard) if shard else None,
                                     on_start=bar.start, on_batch=bar, on_stage=stage)
    render.index_summary(out, out_dir, manifest, err)


def _parse_shard(value: str) -> tuple[int, int]:
    from rsretrieve.errors import ConfigError

    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like I/N (e.g. 0/4), got '{value}'") from None
    return index, count


@app.command()
def check(
    old_data: Annotated[Optional[Path], typer.Argument(hidden=True, help="Old place of --data.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="A CrisisLandMark-format folder.")] = None,
    report_out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report JSON [NAME.check.json beside the dataset folder NAME].")] = None,
) -> None:
    """Read a whole dataset (no embedding) and report every problem; exit 1 on an error-level one."""
    from rsretrieve.config import required_option, renamed_option
    from rsretrieve.datasets.check import check_to_file

    folder = required_option("--data", renamed_option("check DATA (positional)", "--data", old_data, data))
    with render.progress(err, "checking") as bar:
        report, target = check_to_file(folder, report_out, on_start=bar.start, on_sample=bar)
    render.check_report(out, report)
    out.print(f"report written to {target}", markup=False)
    if not report["ok"]:
        raise typer.Exit(1)


@app.command()
def merge(
    shard_dirs: Annotated[list[Path], typer.Argument(help="Shard index folders (index --shard I/N).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Merged index folder.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing folder.")] = False,
) -> None:
    """Merge the shards of one sharded indexing job into one index folder."""
    from rsretrieve.index import merge_indexes

    render.index_summary(out, out_dir, merge_indexes(shard_dirs, out_dir, force))


MinQualityOpt = Annotated[Optional[float], typer.Option("--min-quality", help="Captions: img_quality_score at least this.")]
MinResOpt = Annotated[Optional[float], typer.Option("--min-resolution", help="Captions: metres per pixel at least this.")]
MaxResOpt = Annotated[Optional[float], typer.Option("--max-resolution", help="Captions: metres per pixel at most this.")]
BboxOpt = Annotated[Optional[str], typer.Option("--bbox", help="Only hits inside lon_min,lat_min,lon_max,lat_max (lon_min > lon_max crosses the antimeridian).")]
NearOpt = Annotated[Optional[str], typer.Option("--near", help="Only hits within --radius-km of lon,lat.")]
RadiusOpt = Annotated[Optional[float], typer.Option("--radius-km", help="Radius for --near, in km (haversine).")]


@app.command()
def search(
    index_dir: Annotated[Path, typer.Option("--index", help="Index folder.")],
    queries: Annotated[Optional[Path], typer.Option("--queries", help="queries.jsonl")] = None,
    text: Annotated[Optional[str], typer.Option("--text", help="A single query text.")] = None,
    k: Annotated[Optional[int], typer.Option("-k", help="Results per query [10 shown; with --out the depth eval uses, 1000].")] = None,
    sensor: Annotated[Optional[str], typer.Option("--sensor", help="Search only s1 or s2 samples.")] = None,
    run_out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run file: .json (ranx) or TREC otherwise.")] = None,
    model: CheckedModelOpt = None,
    pretrained: CheckedPretrainedOpt = None,
    seed: CheckedSeedOpt = 0,
    device: DeviceOpt = None,
    min_quality: MinQualityOpt = None,
    min_resolution: MinResOpt = None,
    max_resolution: MaxResOpt = None,
    bbox: BboxOpt = None,
    near: NearOpt = None,
    radius_km: RadiusOpt = None,
    location: Annotated[Optional[str], typer.Option("--location", help="Query by place lon,lat: images that look like it (GeoCLOSP).")] = None,
    like: Annotated[Optional[str], typer.Option("--like", help="Query by example: an indexed patch's key (it ranks first).")] = None,
    exclude_self: Annotated[bool, typer.Option("--exclude-self", help="With --like: leave the query patch out of the hits.")] = False,
    nprobe: Annotated[Optional[int], typer.Option("--nprobe", help="IVF cells visited per query [the index's].")] = None,
    ef_search: Annotated[Optional[int], typer.Option("--ef-search", help="HNSW candidates per query [the index's].")] = None,
) -> None:
    """Run text queries (or a place, --location) against an image index or a caption index."""
    from rsretrieve.captions import CaptionFilter, is_caption_index, search_caption_folder, write_caption_hits
    from rsretrieve.geo import GeoFilter, parse_lonlat
    from rsretrieve.runs import write_run
    from rsretrieve.search import given_filters, query_topics, refuse_unusable_options, search_folder

    topics, depth = query_topics(queries, text, k, run_out, location, like)
    requested = _requested(model, pretrained, seed)
    refuse_unusable_options(index_dir, is_caption_index(index_dir), {
        "--sensor": sensor, "--location": location, "--like": like, "--exclude-self": exclude_self or None, "--min-quality": min_quality,
        "--min-resolution": min_resolution, "--max-resolution": max_resolution})
    if is_caption_index(index_dir):
        where = CaptionFilter.parse(min_quality, min_resolution, max_resolution, bbox, near, radius_km)
        found = search_caption_folder(index_dir, list(topics.values()), depth, where, requested, device, nprobe, ef_search)
        written = write_caption_hits(run_out, list(topics), found.hits) if run_out is not None else None
        render.caption_search(out, err, topics, found, run_out, written)
        return
    run, index = search_folder(index_dir, topics, depth, sensor, requested, device, nprobe, ef_search,
                               GeoFilter.parse(bbox, near, radius_km), location and parse_lonlat(location, "--location"),
                               like, exclude_self)
    if run_out is not None:
        write_run(run, run_out)
    render.search_results(out, run, topics, index, run_out, depth,
                          given_filters({"--sensor": sensor, "--bbox": bbox, "--near": near, "--exclude-self": exclude_self}))


@app.command()
def describe(
    data: Annotated[Path, typer.Option("--data", help="A CrisisLandMark folder, or Git-10M shards with --dataset git10m.")],
    key: Annotated[str, typer.Option("--key", help="Sample key (CrisisLandMark) or img_name (Git-10M).")],
    captions_dir: Annotated[Optional[Path], typer.Option("--index", help="Caption index folder (rsretrieve index --what captions).")] = None,
    old_captions: Annotated[Optional[Path], typer.Option("--captions", hidden=True, help="Old name of --index.")] = None,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset format of --data (rsretrieve list datasets).")] = "crisislandmark",
    k: Annotated[int, typer.Option("-k", help="Captions to show.")] = 10,
    min_quality: MinQualityOpt = None,
    min_resolution: MinResOpt = None,
    max_resolution: MaxResOpt = None,
    bbox: BboxOpt = None,
    near: NearOpt = None,
    radius_km: RadiusOpt = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Describe an image by its nearest captions (image-to-caption retrieval)."""
    from rsretrieve.captions import CaptionFilter, describe_key
    from rsretrieve.config import renamed_option, required_option

    where = CaptionFilter.parse(min_quality, min_resolution, max_resolution, bbox, near, radius_km)
    folder = required_option("--index", renamed_option("describe --captions", "--index", old_captions, captions_dir))
    sensor, hits, empty = describe_key(folder, dataset, data, key, k, where, _requested(model, pretrained, 0), device)
    render.captions(out, f"{key} ({sensor})", hits)
    if empty:
        err.print(f"note: {empty}", markup=False, soft_wrap=True)


@app.command("eval")
def evaluate(
    index_dir: Annotated[Optional[Path], typer.Option("--index", help="Index folder (default: the shipped model on the embedded sample).")] = None,
    qrels: Annotated[Optional[Path], typer.Option("--qrels", help="Qrels file or folder (default: the dataset's qrels/).")] = None,
    queries: Annotated[Optional[Path], typer.Option("--queries", help="queries.jsonl (default: the dataset's).")] = None,
    run_file: Annotated[Optional[Path], typer.Option("--run", help="Score a saved run instead of searching.")] = None,
    metrics: MetricsOpt = None,
    depth: Annotated[Optional[int], typer.Option("--depth", help="Documents searched per query [the largest cutoff, at least 1000].")] = None,
    old_k: Annotated[Optional[int], typer.Option("-k", hidden=True, help="Old name of --depth (-k is the number shown in search and show).")] = None,
    results_out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Results JSON (default: beside what was scored, INDEX.results.json or RUN.results.json).")] = None,
    run_out: Annotated[Optional[Path], typer.Option("--save-run", help="Also write the runs of every slice and the corpus (.json or TREC), for eval --run.")] = None,
    group_by: Annotated[Optional[str], typer.Option("--group-by", help="Query fields to slice metrics by, e.g. country,season,climate_zone.")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="trec_eval (pytrec_eval, default) or ranx: equal numbers.")] = None,
    bbox: Annotated[Optional[str], typer.Option("--bbox", help="Score only the region lon_min,lat_min,lon_max,lat_max (its documents and their qrels).")] = None,
    near: Annotated[Optional[str], typer.Option("--near", help="Score only the documents within --radius-km of lon,lat.")] = None,
    radius_km: RadiusOpt = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Dataset format of --data, as in index: eval reads rs-captions (a caption benchmark: RSICD, RSITMD, UCM, Sydney, NWPU) directly; the others through an index.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="The caption benchmark's folder or annotation file.")] = None,
    protocol: Annotated[Optional[str], typer.Option("--protocol", help="Caption benchmark protocol: clip_benchmark (default), remoteclip, georsclip, skyscript.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Caption benchmark split [test].")] = None,
    images: Annotated[Optional[Path], typer.Option("--images", help="Folder of the caption benchmark's images [images/ beside the annotations].")] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="cross-sensor: S1 queries against S2 and the reverse, on a BigEarthNet.txt index.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Image-to-caption on a caption index: the first N images as queries [all].")] = None,
    model: ModelOpt = None,
    pretrained: PretrainedOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = None,
) -> None:
    """Score retrieval as trec_eval does: text-to-image overall and per sensor (or one region); caption benchmarks,
    image-to-caption and cross-sensor retrieval in both directions. A table and a results JSON."""
    from rsretrieve.config import renamed_option
    from rsretrieve.evaluate import DEFAULT_METRICS, evaluate_to_files
    from rsretrieve.geo import GeoFilter
    from rsretrieve.paired import paired_task, paired_to_files, refuse_options
    from rsretrieve.paths import cache_home

    given = {"--index": index_dir, "--run": run_file, "--qrels": qrels, "--queries": queries, "--depth": depth or old_k,
             "--group-by": group_by, "--bbox": bbox, "--near": near, "--metrics": metrics, "--dataset": dataset, "--data": data,
             "--protocol": protocol, "--split": split, "--images": images, "--task": task, "--limit": limit,
             "--model": model, "--pretrained": pretrained, "--device": device, "--backend": backend}
    kind = paired_task(index_dir, dataset, task)
    refuse_options(kind, given)
    backend = backend or "trec_eval"
    if kind is not None:
        with render.progress(err, "embedding images") as bar:
            result = paired_to_files(kind, given, results_out, run_out, backend, _requested(model, pretrained, seed), device, on_batch=bar)
    else:
        result = evaluate_to_files(index_dir, run_file, qrels, queries, metrics or list(DEFAULT_METRICS),
                                   renamed_option("eval -k", "--depth", old_k, depth), results_out,
                                   run_out, [f.strip() for f in group_by.split(",") if f.strip()] if group_by else [],
                                   backend, _requested(model, pretrained, seed), device,
                                   default_index=lambda: _default_index(cache_home() / "indexes" / "default-sample"),
                                   where=GeoFilter.parse(bbox, near, radius_km))
    if result.saved_runs:
        err.print("saved runs: " + ", ".join(str(p) for p in result.saved_runs), markup=False)
    render.report(out, err, result.report)
    out.print(f"results written to {result.results}")


def _default_index(folder: Path, limit: int | None = None, force: bool = False) -> Path:
    from rsretrieve.jobs import default_index

    with render.progress(err, "embedding") as bar:
        manifest = default_index(folder, limit, force, on_stage=stage, on_start=bar.start, on_batch=bar)
    err.print(f"dataset: {manifest['dataset']['path']} ({manifest['counts']['total']} corpus samples); "
              f"encoder: the shipped default model; index {folder} {'reused' if manifest.get('reused') else 'built'}",
              markup=False, soft_wrap=True)
    return folder


@app.command("bigearthnet-task")
def bigearthnet_task(
    images: Annotated[Path, typer.Option("--images", help="rico-hdl LMDB, or a folder of GeoTIFF patch folders.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Task folder to write.")],
    image_format: Annotated[str, typer.Option("--image-format", help="lmdb or geotiff.")] = "lmdb",
    split: Annotated[list[str], typer.Option("--split", help="bench (default), test, ... (repeatable).")] = ["bench"],  # noqa: B006
    force: Annotated[bool, typer.Option("--force", help="Replace an existing task folder.")] = False,
    parquet: Annotated[Optional[Path], typer.Option("--parquet", help="BigEarthNet.txt.parquet (a file; --data names folders elsewhere).")] = None,
    old_data: Annotated[Optional[Path], typer.Option("--data", hidden=True, help="Old name of --parquet.")] = None,
) -> None:
    """Turn BigEarthNet.txt into a text-to-image retrieval task (queries, qrels, corpus)."""
    from rsretrieve.config import renamed_option, required_option
    from rsretrieve.datasets.bigearthnet_txt import build_task

    table = required_option("--parquet", renamed_option("bigearthnet-task --data", "--parquet", old_data, parquet))
    counts = build_task(table, images, image_format, out_dir, split, force)
    out.print(f"task {out_dir}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()), markup=False)
    out.print(f"next: rsretrieve index --dataset bigearthnet-txt --data {out_dir} --out IDX; "
              "rsretrieve eval --index IDX --group-by country,season,climate_zone", markup=False)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where the demo writes its index and results.")] = Path("runs/demo"),
    limit: Annotated[Optional[int], typer.Option("--limit", help="Use only the first N corpus samples.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild the index.")] = False,
) -> None:
    """The main job: embedded sample -> index (default model) -> eval table. No download."""
    from rsretrieve.evaluate import evaluate_to_files

    result = evaluate_to_files(_default_index(out_dir / "index", limit, force))
    render.report(out, err, result.report)
    out.print(f"results written to {result.results}")


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder: OUT/best (model), OUT/last (checkpoint).")],
    data: DataOpt = None,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset format of --data (its train split is used).")] = "crisislandmark",
    epochs: Annotated[int, typer.Option("--epochs")] = 40,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (linear warm-up).")] = 2e-3,
    patience: Annotated[int, typer.Option("--patience", help="Stop after N epochs without a better validation nDCG@10.")] = 8,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Part of train held out for validation.")] = 0.2,
    freeze: Annotated[str, typer.Option("--freeze", help="none, or encoder (train adapter or head + projection only).")] = "none",
    train_blocks: Annotated[int, typer.Option("--train-blocks", help="Also train the image tower's last N blocks, the rest frozen (open_clip backbones).")] = 0,
    s2_adapter: Annotated[Optional[str], typer.Option("--s2-adapter", help="Band adapter or head (patch-embed) of the Sentinel-2 tower [all-bands].")] = None,
    s1_adapter: Annotated[Optional[str], typer.Option("--s1-adapter", help="Band adapter of the Sentinel-1 tower [all-bands].")] = None,
    old_adapter: Annotated[Optional[str], typer.Option("--adapter", hidden=True, help="Old name: one adapter for both towers.")] = None,
    backbone: Annotated[Optional[str], typer.Option("--backbone", help="spectral-cnn, or open_clip:ARCH[:PRETRAINED] (an open_clip image tower; PRETRAINED a tag or checkpoint file) [spectral-cnn].")] = None,
    width: Annotated[int, typer.Option("--width", help="spectral-cnn channels.")] = 64,
    old_model: Annotated[Optional[str], typer.Option("--backbone-model", hidden=True, help="Old name: --backbone open_clip:ARCH.")] = None,
    old_pretrained: Annotated[Optional[str], typer.Option("--backbone-pretrained", hidden=True, help="Old name: --backbone open_clip:ARCH:PRETRAINED.")] = None,
    text_encoder: Annotated[Optional[str], typer.Option("--text-encoder", help="minilm, or open_clip:ARCH[:PRETRAINED] for an open_clip text tower [minilm].")] = None,
    old_text: Annotated[Optional[str], typer.Option("--text", hidden=True, help="Old name of --text-encoder (--text is a query elsewhere).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/last.")] = False,
) -> None:
    """Contrastively train per-sensor image towers against a frozen text encoder (train split)."""
    from rsretrieve.config import renamed_option
    from rsretrieve.encoders.text import TextSpec
    from rsretrieve.training import TrainConfig, old_backbone_option, train as run_training

    kind, _, rest = (renamed_option("train --text", "--text-encoder", old_text, text_encoder) or "minilm").partition(":")
    arch, _, tag = rest.partition(":")
    config = TrainConfig.from_options(
        old_backbone_option(backbone, old_model, old_pretrained), width, old_adapter, {"s2": s2_adapter, "s1": s1_adapter},
        epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, val_fraction=val_fraction, seed=seed, freeze=freeze,
        train_blocks=train_blocks, text=TextSpec(kind=kind, model=arch or None, pretrained=tag or None),
    )
    with render.training_progress(err) as (on_step, on_epoch):
        record = run_training(data, out_dir, config, resume, on_step=on_step, on_epoch=on_epoch, dataset_format=dataset)
    render.training_summary(out, out_dir, record)


@app.command()
def models(
    missing: Annotated[bool, typer.Option("--missing", help="Only the cards whose weights are not here.")] = False,
    suite: Annotated[Optional[Path], typer.Option("--suite", help="Only the cards this benchmark suite runs.")] = None,
) -> None:
    """The model zoo: per card, whether its weights are here, where to get them and put them, and the command."""
    from rsretrieve.leaderboard import zoo_summaries
    from rsretrieve.zoo import checkpoints_dir

    render.models(out, zoo_summaries(missing, suite), checkpoints_dir())


@app.command()
def leaderboard(
    suite_file: Annotated[Path, typer.Argument(help="Benchmark suite (configs/benchmarks/*.yaml).")],
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: results/<suite name>).")] = None,
    check: Annotated[Optional[Path], typer.Option("--check", help="Expected leaderboard JSON: exit 1 on drift or a ranking change.")] = None,
    write_expected: Annotated[Optional[Path], typer.Option("--write-expected", help="Save this leaderboard as the expected file.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Recompute indexes and records.")] = False,
    data: Annotated[Optional[Path], typer.Option("--data", help="Dataset folder, over the suite's data:.")] = None,
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Accept a partial table when models' weights are missing (exit 0).")] = False,
) -> None:
    """Run every model of a suite, write result records and a leaderboard (md, csv, json); a suite
    with skipped models exits 1 unless --allow-missing."""
    from rsretrieve.leaderboard import run_leaderboard

    result = run_leaderboard(suite_file, out_dir, check, write_expected, force,
                             on_model=lambda name, note: err.print(f"{name}: {note}", markup=False), data=data)
    render.leaderboard(out, err, result, check, write_expected, allow_missing)
    if result.drift or (result.incomplete() and not allow_missing):
        raise typer.Exit(1)


@app.command()
def fuse(
    runs: Annotated[list[Path], typer.Argument(help="Run files (TREC or ranx JSON), two or more.")],
    run_out: Annotated[Path, typer.Option("--out", "-o", help="Fused run (.json or TREC).")],
    method: Annotated[str, typer.Option("--method", help="rrf, combsum (sum), combmnz (mnz), max, wsum, ... (ranx).")] = "rrf",
    norm: Annotated[Optional[str], typer.Option("--norm", help="min-max, max, sum, zmuv, rank, borda or none.")] = None,
    qrels: Annotated[Optional[Path], typer.Option("--qrels", help="Evaluate the fused run against these qrels.")] = None,
    queries: Annotated[Optional[Path], typer.Option("--queries", help="queries.jsonl (with --qrels).")] = None,
    metrics: MetricsOpt = None,
) -> None:
    """Fuse runs (S1 with S2, or several models) and optionally score the result."""
    from rsretrieve.fusion import fuse_files

    _, report, results = fuse_files(runs, run_out, method, norm, qrels, queries, metrics)
    out.print(f"fused {len(runs)} runs with {method} into {run_out}")
    if report is not None:
        render.report(out, err, report)
        out.print(f"results written to {results}")


@app.command()
def compare(
    first: Annotated[Optional[str], typer.Argument(help="A results JSON (eval --out) or leaderboard record; a model with --leaderboard.")] = None,
    second: Annotated[Optional[str], typer.Argument(help="The other one.")] = None,
    leaderboard_dir: Annotated[Optional[Path], typer.Option("--leaderboard", help="Leaderboard folder: FIRST and SECOND are two of its models [its top two].")] = None,
    metrics: MetricsOpt = None,
    slices: Annotated[Optional[list[str]], typer.Option("--slice", help="Slices to compare, e.g. all, s1, s2 (repeatable) [every slice both scored].")] = None,
    test: Annotated[Optional[str], typer.Option("--test", help="student, fisher or tukey [the leaderboard's, else student].")] = None,
    top: Annotated[int, typer.Option("--top", help="Queries listed with the largest differences, each way.")] = 5,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for comparison.json and side-by-side grids of the first metric's largest differences.")] = None,
    k: Annotated[int, typer.Option("-k", help="Hits per model in each grid.")] = 10,
) -> None:
    """Where two models differ, query by query: wins/ties/losses, mean difference with a paired
    bootstrap CI, p-value, the queries that differ most; with --out, side-by-side grids."""
    from rsretrieve.compare import run_compare

    result = run_compare(first, second, leaderboard_dir, [m for v in metrics or [] for m in v.split(",") if m.strip()] or None,
                         [s for v in slices or [] for s in v.split(",") if s.strip()] or None, test, top, out_dir, k)
    render.comparison(out, result)


@app.command()
def show(
    index_dir: Annotated[Path, typer.Option("--index", help="Index folder.")],
    image_out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")],
    text: Annotated[Optional[str], typer.Option("--text", help="Query text.")] = None,
    query_id: Annotated[Optional[str], typer.Option("--query-id", help="A query of queries.jsonl (needed with --qrels).")] = None,
    k: Annotated[int, typer.Option("-k", help="Patches to show.")] = 10,
    qrels: Annotated[Optional[Path], typer.Option("--qrels", help="Mark relevant (green) and non-relevant (red) patches [with --query-id: the dataset's qrels].")] = None,
    queries: Annotated[Optional[Path], typer.Option("--queries", help="queries.jsonl (default: the dataset's).")] = None,
    false_color: Annotated[bool, typer.Option("--false-color", help="Sentinel-2 as B08, B04, B03.")] = False,
    columns: Annotated[int, typer.Option("--columns", help="Tiles per row.")] = 5,
    sensor: Annotated[Optional[str], typer.Option("--sensor", help="Show only s1 or s2 samples.")] = None,
    bbox: BboxOpt = None,
    near: NearOpt = None,
    radius_km: RadiusOpt = None,
    like: Annotated[Optional[str], typer.Option("--like", help="Query by example: an indexed patch's key (it ranks first).")] = None,
    exclude_self: Annotated[bool, typer.Option("--exclude-self", help="With --like: leave the query patch out of the hits.")] = False,
    location: Annotated[Optional[str], typer.Option("--location", help="Query by place lon,lat: images that look like it (GeoCLOSP).")] = None,
) -> None:
    """Draw a grid of a query's top-k patches (rank, score, key, sensor, labels) over a map of
    where they are, with the query's region drawn; the query options are search's."""
    from rsretrieve.geo import GeoFilter, parse_lonlat
    from rsretrieve.visualize import show_query

    path = show_query(index_dir, image_out, text, query_id, k, qrels, queries, "false" if false_color else "true", columns,
                      sensor, GeoFilter.parse(bbox, near, radius_km), like, location and parse_lonlat(location, "--location"),
                      exclude_self)
    out.print(f"wrote {path}")


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(help="Leaderboard folder (rsretrieve leaderboard --out).")],
    report_out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder (index.html + PNGs) [RESULTS/report].")] = None,
    grids: Annotated[int, typer.Option("--grids", help="Query grids to draw.")] = 3,
    pair: Annotated[Optional[str], typer.Option("--compare", help="Two models A,B for the comparison page [the top two].")] = None,
) -> None:
    """Write a static HTML report (offline, no CDN) with tables, charts, PR curves, query grids
    and a query-by-query comparison page of two models."""
    from rsretrieve.report import build_report

    page = build_report(results_dir, report_out or results_dir / "report", grids, pair=pair.split(",") if pair else None)
    out.print(f"wrote {page}")


@app.command("list")
def list_names(
    what: Annotated[str, typer.Argument(help="adapters, encoders, architectures (open_clip), datasets, fixtures or bands")],
) -> None:
    """List registered adapters, encoder backends, open_clip architectures, dataset formats, fixture formats, or every sensor's bands."""
    from rsretrieve.catalog import registered_names

    out.print("\n".join(registered_names(what)), soft_wrap=True, markup=False, highlight=False)


def main() -> None:
    app()
