"""Score runs against qrels, overall and per sensor slice, and say what was left out.

Every number equals trec_eval's (pytrec_eval) on the same run and qrels:
- ranking: score descending, ties by document id descending (``rsretrieve.runs``);
- relevance: grade >= 1 is relevant; 0 and negative grades are not;
- means: over the queries with at least one relevant document in the slice; a query missing
  from the run scores 0 (as ``trec_eval -c``); queries whose judgements are all non-relevant
  are listed in ``queries_without_relevant`` and left out (trec_eval would average in a 0).

A **sensor slice** (``s1``, ``s2``) is retrieval over that sensor's documents only: each
query is searched against the sub-corpus of that sensor, and only judgements of documents
in that sub-corpus count. A saved run holds only its own ranking, so ``eval --index
--save-run`` writes one run per slice plus the corpus; a run without them can only be
filtered by sensor, which is a different quantity, reported as ``s1-filtered``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.datasets.queries import Qrels, load_qrels, load_queries, load_query_fields
from rsretrieve.datasets.sensors import sensor_of_key
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.geo import GeoFilter
from rsretrieve.io import atomic_path, check_space, read_json, read_text, sha256_file, write_json
from rsretrieve.metrics import BACKENDS, parse_metric, per_query
from rsretrieve.progress import stage
from rsretrieve.runs import DEFAULT_DEPTH, Run, as_run, read_run, run_bytes, write_run

DEFAULT_METRICS: tuple[str, ...] = (
    "map@100", "ndcg@10", "ndcg@100", "ndcg@1000", "recall@10", "recall@100", "precision@10", "mrr",
)
DEFAULT_BACKEND = "trec_eval"
SLICES_FORMAT = "rsretrieve-run-slices"


def parse_metrics(names: Sequence[str]) -> list[str]:
    """Validate metric names such as ``ndcg@10`` or ``mrr`` before any work is done."""
    out = [parse_metric(name).label for raw in names for name in filter(None, (p.strip() for p in raw.split(",")))]
    if not out:
        raise ConfigError("no metrics given")
    return out


def check_backend(name: str) -> str:
    BACKENDS.get(name)  # "did you mean" for a misspelt backend, before any work
    return name


def search_depth(metrics: Sequence[str]) -> int:
    """Run depth that every cutoff needs (metrics without a cutoff get DEFAULT_DEPTH)."""
    cutoffs = [parse_metric(m).k or 0 for m in metrics]
    return max([DEFAULT_DEPTH, *cutoffs])


def check_query_ids(qrels: Qrels, queries: Mapping[str, str], qrels_path: Path, queries_path: Path) -> None:
    unknown = sorted(set(qrels) - set(queries))
    if unknown:
        more = f" ({len(unknown) - 1} more unknown query ids)" if len(unknown) > 1 else ""
        where = qrels.where(unknown[0]) if hasattr(qrels, "where") else str(qrels_path)
        raise DataError(f"{where}: unknown query id '{unknown[0]}' (not in {queries_path}){more}")


def scored_queries(qrels: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Queries with at least one relevant (grade >= 1) judgement, sorted."""
    return sorted(q for q, docs in qrels.items() if any(r > 0 for r in docs.values()))


def score_run(
    qrels: Mapping[str, Mapping[str, int]], run: Run | Mapping[str, Mapping[str, float]], metrics: Sequence[str],
    backend: str = DEFAULT_BACKEND,
) -> dict[str, Any]:
    """Mean and per-query scores over the queries that have a relevant document."""
    qids = scored_queries(qrels)
    if not qids:
        return {"n_queries": 0, "scores": {m: None for m in metrics}, "per_query": {m: {} for m in metrics}}
    values = per_query(qrels, as_run(run), metrics, qids, backend)
    return {
        "n_queries": len(qids),
        "scores": {m: float(np.mean(values[m])) for m in metrics},
        "per_query": {m: dict(zip(qids, values[m].tolist())) for m in metrics},
    }


def restrict(qrels: Mapping[str, Mapping[str, int]], corpus: Any) -> tuple[dict[str, dict[str, int]], int]:
    """Drop judgements of documents outside ``corpus`` (anything with ``in``); return how many were dropped."""
    kept = {q: {d: r for d, r in docs.items() if d in corpus} for q, docs in qrels.items()}
    dropped = sum(len(docs) for docs in qrels.values()) - sum(len(docs) for docs in kept.values())
    return kept, dropped


@dataclass(frozen=True)
class Corpus:
    """The documents runs were retrieved from, with each one's sensor: decides which judgements
    count in which slice. ``None`` sensors mean the corpus is only known by its keys."""

    sensor_of: Mapping[str, str | None]

    def slice(self, sensor: str | None) -> "_SliceMembers":
        return _SliceMembers(self.sensor_of, sensor)

    def sizes(self, slices: Sequence[str]) -> dict[str, int]:
        """Number of documents of each slice."""
        counts: dict[str | None, int] = {}
        for sensor in self.sensor_of.values():
            counts[sensor] = counts.get(sensor, 0) + 1
        return {name: len(self.sensor_of) if slice_sensor(name) is None else counts.get(slice_sensor(name), 0)
                for name in slices}

    @classmethod
    def from_keys(cls, keys: Sequence[str], sensors: Sequence[str]) -> "Corpus":
        return cls(dict(zip(keys, sensors)))


@dataclass(frozen=True)
class _SliceMembers:
    sensor_of: Mapping[str, str | None]
    sensor: str | None

    def __contains__(self, doc: object) -> bool:
        if doc not in self.sensor_of:
            return False
        return self.sensor is None or self.sensor_of[doc] == self.sensor  # type: ignore[index]


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate_index`` gives: the report, the run of every slice and their corpus."""

    report: dict[str, Any]
    runs: dict[str, Run]
    corpus: Corpus


def slice_sensor(name: str) -> str | None:
    """``all`` -> None; ``s1`` and ``s1-filtered`` -> ``s1``."""
    return None if name == "all" else name.removesuffix("-filtered")


def evaluate_slices(
    qrels: Qrels,
    queries: Mapping[str, str],
    runs: Mapping[str, Run | Mapping[str, Mapping[str, float]]],
    corpus: Corpus,
    metrics: Sequence[str],
    backend: str = DEFAULT_BACKEND,
    corpus_sizes: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Score each slice's run (``all``, ``s2``, ``s1``, or ``*-filtered``) against the qrels
    restricted to that slice's documents."""
    started = time.perf_counter()
    results: dict[str, Any] = {}
    scores_by_query: dict[str, Any] = {}
    shallow: list[dict[str, Any]] = []
    for name, run in runs.items():
        run = as_run(run)
        restricted, _ = restrict(qrels, corpus.slice(slice_sensor(name)))
        scored = score_run(restricted, run, metrics, backend)
        scores_by_query[name] = scored.pop("per_query")
        scored["queries_without_relevant"] = sorted(
            q for q, docs in restricted.items() if not any(r > 0 for r in docs.values())
        )
        results[name] = scored
        size = (corpus_sizes or {}).get(name)
        shallow.extend(_shallow(name, run, metrics, size))
    absent = sorted({d for docs in qrels.values() for d in docs if d not in corpus.sensor_of})
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metrics": list(metrics),
        "backend": backend,
        "results": results,
        "diagnostics": {
            "n_queries": len(queries),
            "queries_without_judgements": sorted(set(queries) - set(qrels)),
            "judged_docs_not_in_corpus": len(absent),
            "judged_docs_not_in_corpus_examples": absent[:10],
            "shallow_runs": shallow,
        },
        "per_query": scores_by_query,
        "timings": {"score_s": round(time.perf_counter() - started, 3)},
    }


def _shallow(name: str, run: Run, metrics: Sequence[str], corpus_size: int | None) -> list[dict[str, Any]]:
    """Metrics whose cutoff lies beyond the run's depth, where the slice holds more documents
    than the run ranks (such a metric silently changes: documents below the depth count as
    not retrieved)."""
    depth = int(run.depths().max()) if len(run) else 0
    size = corpus_size if corpus_size is not None else len(np.unique(run.docs))
    out = []
    for metric in metrics:
        k = parse_metric(metric).k
        if k is not None and depth < k and depth < size:
            out.append({"slice": name, "metric": metric, "depth": depth, "documents": size})
    return out


def load_topics(queries_path: Path, qrels_path: Path) -> tuple[dict[str, str], Qrels]:
    """Queries and qrels, checked against each other (unknown query ids are errors)."""
    queries = load_queries(queries_path)
    qrels = load_qrels(qrels_path)
    check_query_ids(qrels, queries, qrels_path, queries_path)
    return queries, qrels


def check_known_documents(qrels: Qrels, known: set[str], qrels_path: Path, dataset: Path) -> None:
    """A judged document that the dataset does not hold at all (any split) is an error."""
    for qid, docs in qrels.items():
        for doc in docs:
            if doc not in known:
                where = qrels.where(qid, doc) if hasattr(qrels, "where") else str(qrels_path)
                raise DataError(f"{where}: unknown document id '{doc}' (not a sample of the dataset at {dataset})")


def evaluate_index(
    index_dir: Path,
    qrels_path: Path | None = None,
    queries_path: Path | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    k: int | None = None,
    requested: Any = None,
    device: str | None = None,
    group_by: Sequence[str] = (),
    backend: str = DEFAULT_BACKEND,
    encoder: Any = None,
    where: GeoFilter | None = None,
) -> Evaluation:
    """Search every query over the index (all, then each sensor's sub-corpus) and score the runs.

    Queries and qrels default to the ones of the dataset the index was built from. An
    ``encoder`` already loaded (the one that built the index) is checked and reused. With a
    geographic filter ``where`` the corpus is that region's documents: every slice searches
    only them and its qrels keep only their judgements, so a crisis area is scored alone.
    """
    from rsretrieve.index import load_index
    from rsretrieve.search import check_region, check_weights, encode_queries, encoder_for_index, search_vectors

    metrics = parse_metrics(metrics)
    check_backend(backend)
    index = load_index(index_dir)
    root = Path(index.manifest["dataset"]["path"])
    queries_path = Path(queries_path or _dataset_file(index.manifest, "queries"))
    qrels_path = Path(qrels_path or _dataset_file(index.manifest, "qrels"))
    queries, qrels = load_topics(queries_path, qrels_path)
    known = _dataset_keys(index.manifest)
    if known is not None:
        check_known_documents(qrels, known, qrels_path, root)
    depth = k or search_depth(metrics)
    region = check_region(index, None, where)
    if encoder is None:
        encoder = encoder_for_index(index, requested, device)
    else:
        check_weights(index.manifest, encoder, index.path)
    started = time.perf_counter()
    stage(f"embedding {len(queries)} queries and searching {len(index.keys)} patches to depth {depth}")
    qids, vectors = encode_queries(encoder, queries)
    runs = {"all": search_vectors(index, qids, vectors, depth, where=where)}
    members = range(len(index.keys)) if region is None else region.tolist()
    for sensor in sorted({index.sensors[i] for i in members}):
        runs[sensor] = search_vectors(index, qids, vectors, depth, sensor, where)
    search_seconds = time.perf_counter() - started
    corpus = Corpus.from_keys([index.keys[i] for i in members], [index.sensors[i] for i in members])
    stage(f"scoring {len(runs)} slices with {backend} ({', '.join(metrics)})")
    report = evaluate_slices(qrels, queries, runs, corpus, metrics, backend, corpus.sizes(runs))
    report["timings"]["search_s"] = round(search_seconds, 3)
    manifest = index.manifest
    report["source"] = {
        "index": str(Path(index_dir).resolve()),
        "queries": str(queries_path),
        "qrels": str(qrels_path),
        "depth": depth,
        "encoder": manifest["encoder"],
        "adapters": manifest["adapters"],
        "precision": manifest.get("precision", "fp32"),
        "dataset": manifest["dataset"],
        "counts": manifest["counts"],
    }
    if region is not None:
        report["source"]["region"] = {**where.describe(), "documents": int(region.size)}  # type: ignore[union-attr]
        _split_region_diagnostics(report["diagnostics"], qrels, set(index.keys))
    report["versions"] = manifest["versions"]
    if group_by:
        fields = load_query_fields(queries_path, group_by)
        report["groups"] = group_scores(report["per_query"]["all"], fields, group_by)
    return Evaluation(report, runs, corpus)


def _split_region_diagnostics(diagnostics: dict[str, Any], qrels: Qrels, indexed: set[str]) -> None:
    """In a region's evaluation, judged documents of the index outside the region are counted
    apart from those the index does not hold at all (only the latter are a warning)."""
    judged = {d for docs in qrels.values() for d in docs}
    absent = sorted(judged - indexed)
    diagnostics["judged_docs_outside_region"] = diagnostics["judged_docs_not_in_corpus"] - len(absent)
    diagnostics["judged_docs_not_in_corpus"] = len(absent)
    diagnostics["judged_docs_not_in_corpus_examples"] = absent[:10]


def _dataset_file(manifest: Mapping[str, Any], what: str) -> Path:
    """The queries or qrels location of the dataset an index was built from (asked of its format)."""
    from rsretrieve.datasets import topic_paths

    queries, qrels = topic_paths(manifest["dataset"].get("name", "crisislandmark"), Path(manifest["dataset"]["path"]))
    return queries if what == "queries" else qrels


def _dataset_keys(manifest: Mapping[str, Any]) -> set[str] | None:
    """Every sample key of the indexed dataset (all splits), or None when it cannot be listed."""
    from rsretrieve.datasets import dataset_class

    root = Path(manifest["dataset"]["path"])
    if not root.is_dir():
        return None
    return dataset_class(manifest["dataset"].get("name", "crisislandmark")).list_keys(root)


def save_slice_runs(runs: Mapping[str, Run], corpus: Corpus, path: Path, source: Mapping[str, Any]) -> list[Path]:
    """Write the run of every slice (``RUN``, ``RUN-stem.s1.ext``, ...), the corpus (``stem.corpus.tsv``:
    key and sensor a line) and ``stem.slices.json`` tying them together with checksums, so that
    ``eval --run RUN`` reproduces the ``eval --index`` table exactly."""
    path = Path(path)
    files = {name: path if name == "all" else _beside(path, f".{name}{path.suffix}") for name in runs}
    corpus_path, sidecar = _beside(path, ".corpus.tsv"), _beside(path, ".slices.json")
    check_space(path, sum(run_bytes(run) for run in runs.values()) + 64 * len(corpus.sensor_of), "the runs of every slice")
    # Every file is written beside its target first and all are renamed at the end: a full disk
    # half-way leaves the earlier set whole, not a mix of new and old slices.
    with ExitStack() as stack:
        written = {target: stack.enter_context(atomic_path(target)) for target in [*files.values(), corpus_path, sidecar]}
        for name, run in runs.items():
            write_run(run, written[files[name]], as_json=path.suffix == ".json")
        _write_corpus(corpus, written[corpus_path])
        entry = {
            "format": SLICES_FORMAT,
            "version": 1,
            "slices": {name: {"file": files[name].name, "sha256": sha256_file(written[files[name]])} for name in runs},
            "corpus": {"file": corpus_path.name, "sha256": sha256_file(written[corpus_path]), "documents": corpus.sizes(list(runs))},
            "source": dict(source),
        }
        write_json(written[sidecar], entry)
    return [*files.values(), corpus_path, sidecar]


def _beside(path: Path, suffix: str) -> Path:
    """``runs/x.trec`` + ``.s1.trec`` -> ``runs/x.s1.trec``."""
    return path.with_name(path.name.removesuffix(path.suffix) + suffix)


def _write_corpus(corpus: Corpus, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.writelines(f"{key}\t{sensor}\n" for key, sensor in corpus.sensor_of.items())


def _read_corpus(path: Path) -> Corpus:
    sensor_of: dict[str, str | None] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0]:
            raise DataError(f"{path}:{number}: a corpus line is 'key<TAB>sensor'")
        sensor_of[parts[0]] = parts[1]
    return Corpus(sensor_of)


def load_slice_runs(path: Path) -> tuple[dict[str, Run], Corpus, dict[str, int], dict[str, Any]] | None:
    """The slice runs and corpus saved beside run file ``path`` by ``eval --index --save-run``,
    or None when there are none. A file changed since it was saved is an error, never used."""
    path = Path(path)
    sidecar = _beside(path, ".slices.json")
    if not sidecar.is_file():
        return None
    entry = read_json(sidecar, DataError, "a slices file")
    try:
        if entry.get("format") != SLICES_FORMAT or entry["slices"]["all"]["file"] != path.name:
            raise KeyError("format")
        slices = {name: (path.parent / item["file"], item["sha256"]) for name, item in entry["slices"].items()}
        corpus_file = (path.parent / entry["corpus"]["file"], entry["corpus"]["sha256"])
        sizes = {name: int(n) for name, n in entry["corpus"]["documents"].items()}
    except (KeyError, TypeError, AttributeError):
        raise DataError(f"{sidecar}: not the slices file of {path.name} (rerun eval --index --save-run)") from None
    for file, digest in [*slices.values(), corpus_file]:
        if Path(file).name != file.name or file.parent != path.parent:
            raise DataError(f"{sidecar}: '{file}' is not a file beside it")
        if not file.is_file():
            raise DataError(f"{sidecar} lists {file.name}, which is missing (rerun eval --index --save-run)")
        if sha256_file(file) != digest:
            raise DataError(f"{file} changed since {sidecar.name} was written; rerun eval --index --save-run")
    runs = {name: read_run(file) for name, (file, _) in slices.items()}
    return runs, _read_corpus(corpus_file[0]), sizes, dict(entry.get("source", {}))


def filtered_slices(run: Run, qrels: Qrels) -> tuple[dict[str, Run], Corpus]:
    """A lone run: ``all`` plus each sensor's documents filtered out of it (``s1-filtered``).

    Its corpus is unknown, so every retrieved and judged document is assumed to be in it.
    When some key tells no sensor, only ``all`` is scored.
    """
    docs = set(run.names) | {d for judged in qrels.values() for d in judged}
    try:
        sensor_of: dict[str, str | None] = {d: sensor_of_key(d) for d in docs}
    except DataError:
        return {"all": run}, Corpus(dict.fromkeys(docs))
    runs: dict[str, Run] = {"all": run}
    for sensor in sorted(set(sensor_of.values())):  # type: ignore[type-var]
        runs[f"{sensor}-filtered"] = run.keep_documents(np.array([sensor_of[d] == sensor for d in run.names], bool))
    return runs, Corpus(sensor_of)


def group_scores(
    per_query: Mapping[str, Mapping[str, float]], attributes: Mapping[str, Mapping[str, Any]], fields: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Mean per-query scores grouped by query attributes (e.g. country, season, climate zone);
    queries without a value for a field are left out of that field's groups."""
    out: dict[str, dict[str, Any]] = {}
    for field in fields:
        groups: dict[str, list[str]] = {}
        for qid in next(iter(per_query.values()), {}):
            value = attributes.get(qid, {}).get(field)
            if value is not None:
                groups.setdefault(str(value), []).append(qid)
        out[field] = {
            value: {"n_queries": len(qids),
                    "scores": {m: float(sum(per_query[m][q] for q in qids) / len(qids)) for m in per_query}}
            for value, qids in sorted(groups.items())
        }
    return out


def evaluate_saved_run(
    run_path: Path, queries_path: Path, qrels_path: Path, metrics: Sequence[str] = DEFAULT_METRICS,
    backend: str = DEFAULT_BACKEND,
) -> dict[str, Any]:
    """Score a run file without any model (no torch, faiss or ranx import).

    With the slice runs and corpus that ``eval --index --save-run`` wrote beside it, the
    table equals the ``eval --index`` one; a lone run gets ``*-filtered`` sensor columns.
    """
    metrics = parse_metrics(metrics)
    check_backend(backend)
    queries, qrels = load_topics(Path(queries_path), Path(qrels_path))
    saved = load_slice_runs(run_path)
    if saved is not None:
        runs, corpus, sizes, source = saved
    else:
        runs, corpus = filtered_slices(read_run(run_path), qrels)
        sizes, source = {}, {}
    for name, run in runs.items():
        unknown = [q for q in run.qids if q not in queries]
        if unknown:
            raise DataError(f"run {run_path} ({name}) has query id '{unknown[0]}' that is not in {queries_path}")
    stage(f"scoring {run_path} ({len(runs)} slices) with {backend}")
    report = evaluate_slices(qrels, queries, runs, corpus, metrics, backend, sizes or None)
    report["source"] = {"run": str(run_path), "queries": str(queries_path), "qrels": str(qrels_path),
                        "slices": "saved" if saved is not None else "filtered", "index_source": source}
    return report


SAVED_RUN_REASONS = {
    "--save-run": "the run is saved already",
    "--depth": "a saved run has its depth already",
    "--model": "a saved run is scored without a model",
    "--device": "a saved run is scored without a model",
    "--bbox": "a saved run holds no locations: give --index to score a region",
    "--near": "a saved run holds no locations: give --index to score a region",
}


def refuse_for_saved_run(given: Mapping[str, object]) -> None:
    """Options that mean nothing when scoring a saved run are errors, never ignored."""
    for option, value in given.items():
        if value is not None:
            raise ConfigError(f"{option} cannot be used with --run: {SAVED_RUN_REASONS[option]}")


@dataclass(frozen=True)
class EvalOutput:
    """What ``rsretrieve eval`` produced: the report, where it was written, the saved runs."""

    report: dict[str, Any]
    results: Path
    saved_runs: list[Path]


def evaluate_to_files(
    index_dir: Path | None = None,
    run_file: Path | None = None,
    qrels_path: Path | None = None,
    queries_path: Path | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    k: int | None = None,
    results_out: Path | None = None,
    run_out: Path | None = None,
    group_by: Sequence[str] = (),
    backend: str = DEFAULT_BACKEND,
    requested: Any = None,
    device: str | None = None,
    default_index: Callable[[], Path] | None = None,
    where: GeoFilter | None = None,
) -> EvalOutput:
    """What ``rsretrieve eval`` runs: score a saved ``run_file`` (with its slice runs when
    saved) or search ``index_dir`` (none given: the one ``default_index`` builds or reuses).
    Options and every output location are checked before any work; the results JSON goes to
    ``results_out`` (default: beside what was scored, NAME.results.json) and, with
    ``run_out``, every slice's run and the corpus are saved for ``eval --run``."""
    from rsretrieve.io import check_writable, results_path

    chosen = parse_metrics(metrics)
    check_backend(backend)
    if run_file is not None:
        if index_dir is not None or qrels_path is None or queries_path is None:
            raise ConfigError("--run needs --qrels and --queries, and no --index")
        refuse_for_saved_run({"--save-run": run_out, "--depth": k, "--model": requested, "--device": device,
                              **({o: True for o in where.options()} if where is not None else {})})
    elif index_dir is None and default_index is None:
        raise ConfigError("give --index DIR to search, or --run FILE to score a saved run")
    for path in (results_out, run_out):
        if path is not None:
            check_writable(Path(path))
    if run_file is None and index_dir is None:
        index_dir = default_index()  # type: ignore[misc]
    target = Path(results_out) if results_out is not None else results_path(Path(run_file or index_dir))  # type: ignore[arg-type]
    check_writable(target)
    saved: list[Path] = []
    if run_file is not None:
        report = evaluate_saved_run(Path(run_file), Path(queries_path), Path(qrels_path), chosen, backend)  # type: ignore[arg-type]
        if group_by:
            report["groups"] = group_scores(report["per_query"]["all"], load_query_fields(Path(queries_path), group_by), group_by)  # type: ignore[arg-type]
    else:
        evaluation = evaluate_index(Path(index_dir), qrels_path, queries_path, chosen, k, requested, device, group_by,  # type: ignore[arg-type]
                                    backend, where=where)
        report = evaluation.report
        if run_out is not None:
            saved = save_slice_runs(evaluation.runs, evaluation.corpus, Path(run_out), report["source"])
    write_json(target, report)
    return EvalOutput(report, target, saved)
