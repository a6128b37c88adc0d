"""Text queries -> encoder -> FAISS top-k -> runs (``rsretrieve.runs.Run``).

The text encoder is rebuilt from the index manifest, so queries and images always share
one embedding space; asking for a different encoder than the index was built with fails.
Results follow the one ranking rule (score descending, ties by document id descending):
when a tie straddles the k-th place, the search goes deeper until the tied group is whole,
so the top k are exactly trec_eval's top k of the corpus.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.encoders import Encoder, EncoderSpec, check_finite, load_encoder
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.geo import GeoFilter
from rsretrieve.index import EXACT_FILTER_ROWS, LoadedIndex, top_rows, widening_search
from rsretrieve.progress import stage
from rsretrieve.registry import did_you_mean
from rsretrieve.runs import Run

QUERY_BATCH = 256


def encoder_for_manifest(
    manifest: Mapping[str, Any], where: Path, requested: EncoderSpec | None = None, device: str | None = None
) -> Encoder:
    """Load the encoder an index was built with; a different ``requested`` spec or changed
    weights is an error, so queries and the index always share one embedding space."""
    encoder = load_encoder(manifest_spec(manifest, where, requested), device)
    check_weights(manifest, encoder, where)
    return encoder


def manifest_spec(manifest: Mapping[str, Any], where: Path, requested: EncoderSpec | None = None) -> EncoderSpec:
    """The encoder spec an index (image or caption) was built with; a different ``requested``
    spec is an error."""
    spec = EncoderSpec.from_manifest(manifest["encoder"])
    if requested is not None and requested != spec:
        raise ConfigError(
            f"index {where} was built with {spec.label()}; "
            f"you asked for {requested.label()}. Rebuild the index or drop the encoder options"
        )
    return spec


def check_weights(manifest: Mapping[str, Any], encoder: Encoder, where: Path) -> None:
    """The encoder's weights must be the ones the index was built with."""
    expected = manifest["encoder"].get("weights_sha256")
    if expected and encoder.weights_sha256 != expected:
        raise DataError(
            f"the weights of {encoder.spec.label()} differ from those index {where} was built "
            "with (weights_sha256 mismatch); rebuild the index"
        )


def encoder_for_index(index: LoadedIndex, requested: EncoderSpec | None = None, device: str | None = None) -> Encoder:
    return encoder_for_manifest(index.manifest, index.path, requested, device)


def given_filters(options: Mapping[str, object]) -> list[str]:
    """The filter options that were given (a value, or a flag set), for the note that names
    what left nothing to rank."""
    return [name for name, value in options.items() if value not in (None, False, "")]


def encode_queries(encoder: Encoder, queries: Mapping[str, str]) -> tuple[list[str], np.ndarray]:
    """Embed query texts once, in batches; the vectors serve every slice's search."""
    qids = list(queries)
    if not qids:
        raise DataError("no queries to search")
    vectors = np.concatenate(
        [encoder.encode_texts([queries[q] for q in qids[i : i + QUERY_BATCH]])
         for i in range(0, len(qids), QUERY_BATCH)]
    )
    return qids, check_finite(vectors, encoder, qids, "query")


def search_vectors(
    index: LoadedIndex, qids: list[str], vectors: np.ndarray, k: int, sensor: str | None = None,
    where: GeoFilter | None = None,
) -> Run:
    """Top-``k`` documents per query vector, over the whole index or the rows of one sensor
    and/or inside a geographic filter ``where``. A geographic filter is exact on every index
    kind: the hits are the passing rows' brute-force top ``k`` (see ``_search``)."""
    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    rows = restricted_rows(index, sensor, where)
    exact = where is not None and where.active()
    available = index.faiss_index.ntotal if rows is None else int(rows.size)
    if available == 0:
        return Run(qids, index.keys, np.zeros(len(qids) + 1, np.int64), np.empty(0, np.int64), np.empty(0))
    want = min(k, available)
    depth = min(want + 1, available)  # one more: does a tie run past the k-th place?
    scores, found = _search(index, vectors, depth, rows, exact)
    lists = [(scores[i, :want], found[i, :want]) for i in range(len(qids))]
    if depth > want:
        boundary = scores[:, want - 1]
        for i in np.flatnonzero((found[:, want] >= 0) & (scores[:, want] == boundary)).tolist():
            deeper, row_scores, row_ids = depth, scores[i], found[i]
            while deeper < available and row_scores[deeper - 1] == boundary[i]:
                deeper = min(available, deeper * 2)
                wider = _search(index, vectors[i : i + 1], deeper, rows, exact)
                row_scores, row_ids = wider[0][0], wider[1][0]
            lists[i] = (row_scores, row_ids)
    valid = [ids >= 0 for _, ids in lists]
    offsets = np.concatenate([[0], np.cumsum([int(v.sum()) for v in valid])])
    run = Run(qids, index.keys, offsets, np.concatenate([ids[v] for (_, ids), v in zip(lists, valid)]),
              np.concatenate([sc[v] for (sc, _), v in zip(lists, valid)]).astype(np.float64))
    return run.truncate(want)


def check_region(index: LoadedIndex, sensor: str | None, where: GeoFilter | None) -> np.ndarray | None:
    """``restricted_rows``, checked before any encoder loads: a region (and sensor) that no
    indexed patch lies in is an error, with the swapped lat,lon named when that reading would
    hold patches."""
    rows = restricted_rows(index, sensor, where)
    if rows is None or rows.size or where is None:
        return rows
    located = int(np.isfinite(index.locations).all(axis=1).sum())
    message = (f"no document of index {index.path} passes {where.text()}{f' and --sensor {sensor}' if sensor else ''}: "
               f"nothing to rank ({located} of {len(index.keys)} patches have a known location)")
    swapped = where.swapped()
    if swapped is not None:
        count = restricted_rows(index, sensor, swapped)
        if count is not None and count.size:
            message += (f"; read as lat,lon, {swapped.text()} would hold {count.size}: "
                        "the options take longitude first (lon,lat)")
    raise DataError(message)


def restricted_rows(index: LoadedIndex, sensor: str | None = None, where: GeoFilter | None = None) -> np.ndarray | None:
    """The rows a search may return (None: all): ``sensor``'s rows, those inside ``where``."""
    rows = None
    if sensor is not None:
        rows = index.sensor_rows(sensor)
        if rows.size == 0:
            raise DataError(f"index {index.path} holds no {sensor} samples")
    if where is not None and where.active():
        inside = np.flatnonzero(where.mask(index.locations[:, 0], index.locations[:, 1])).astype(np.int64)
        rows = inside if rows is None else np.intersect1d(rows, inside)
    return rows


def search(
    index: LoadedIndex, encoder: Encoder, queries: Mapping[str, str], k: int, sensor: str | None = None,
    where: GeoFilter | None = None,
) -> Run:
    stage(f"embedding {len(queries)} quer{'y' if len(queries) == 1 else 'ies'} and searching {index.faiss_index.ntotal} patches")
    qids, vectors = encode_queries(encoder, queries)
    return search_vectors(index, qids, vectors, k, sensor, where)


def query_topics(
    queries: Path | None, text: str | None, k: int | None = None, run_out: Path | None = None,
    location: str | None = None, like: str | None = None,
) -> tuple[dict[str, str], int]:
    """The queries of ``rsretrieve search`` (a queries file, one ``text``, one ``location``
    "lon,lat" as query id ``location``, or one indexed patch ``like`` as query id ``like``)
    and the depth: ``k``, else 10 hits to show or, for a run file (checked writable first),
    the depth ``eval`` scores at, so that a saved run is never shallower than eval's cutoffs."""
    from rsretrieve.datasets.queries import load_queries
    from rsretrieve.geo import parse_lonlat
    from rsretrieve.runs import DEFAULT_DEPTH
    from rsretrieve.io import check_writable

    if sum(v is not None for v in (queries, text, location, like)) != 1:
        raise ConfigError("give one of --queries FILE, --text TEXT, --location LON,LAT or --like KEY")
    if run_out is not None:
        check_writable(Path(run_out))
    if location is not None:
        topics = {"location": ",".join(f"{v:g}" for v in parse_lonlat(location, "--location"))}
    elif like is not None:
        topics = {"like": str(like)}
    else:
        topics = load_queries(Path(queries)) if queries is not None else {"text": str(text)}
    return topics, k if k is not None else (DEFAULT_DEPTH if run_out is not None else 10)


def search_folder(
    folder: Path, queries: Mapping[str, str], k: int, sensor: str | None = None,
    requested: EncoderSpec | None = None, device: str | None = None, nprobe: int | None = None,
    ef_search: int | None = None, where: GeoFilter | None = None, location: tuple[float, float] | None = None,
    like: str | None = None, exclude_self: bool = False,
) -> tuple[Run, LoadedIndex]:
    """What ``rsretrieve search`` runs on an image index: open it, load the encoder it was
    built with (``requested`` must match it) and search ``queries`` (only ``sensor``'s
    documents when given: s1, s2 or all; only those inside ``where``), with ``nprobe`` /
    ``ef_search`` when given. With ``location`` (lon, lat) the one query is the encoder's
    location embedding of that place instead of a text (GeoCLOSP: images that look like it);
    with ``like`` it is the stored embedding of that indexed patch (query by example: the
    patch itself ranks first, unless ``exclude_self``)."""
    from rsretrieve.index import load_index, override_search

    index = load_index(folder)
    index.manifest["index"] = override_search(index.manifest["index"], Path(folder), nprobe, ef_search)
    return search_index(index, queries, k, sensor, requested, device, where, location, like, exclude_self), index


def search_index(
    index: LoadedIndex, queries: Mapping[str, str], k: int, sensor: str | None = None,
    requested: EncoderSpec | None = None, device: str | None = None, where: GeoFilter | None = None,
    location: tuple[float, float] | None = None, like: str | None = None, exclude_self: bool = False,
) -> Run:
    """``search_folder`` on an index already open; a region no patch lies in is refused
    before the encoder loads."""
    from rsretrieve.datasets.sensors import parse_sensor_filter

    only = parse_sensor_filter(sensor)[0] if sensor and sensor != "all" else None
    if exclude_self and like is None:
        raise ConfigError("--exclude-self drops the query patch of --like KEY; there is none")
    check_region(index, only, where)
    if like is not None:  # no model runs: a different model or a device is an error, not ignored
        manifest_spec(index.manifest, index.path, requested)
        if device is not None:
            raise ConfigError("--device has no use with --like: the query is a stored embedding, no model runs")
        return like_patch(index, like, k, only, where, exclude_self)
    encoder = encoder_for_index(index, requested, device)
    if location is None:
        return search(index, encoder, queries, k, only, where)
    return search_vectors(index, list(queries), encode_location(encoder, location), k, only, where)


def like_patch(index: LoadedIndex, key: str, k: int, sensor: str | None = None, where: GeoFilter | None = None,
               exclude_self: bool = False) -> Run:
    """Query by example: the stored embedding of indexed patch ``key`` as the query (query id
    ``like``); no encoder is loaded. The patch itself ranks first unless ``exclude_self``."""
    rows = {name: i for i, name in enumerate(index.keys)}
    if key not in rows:
        raise DataError(f"--like: key '{key}' is not in index {index.path}.{did_you_mean(key, rows)}")
    vector = np.asarray(index.embeddings[rows[key] : rows[key] + 1], np.float32)
    run = search_vectors(index, ["like"], vector, k + int(exclude_self), sensor, where)
    if not exclude_self:
        return run
    others = np.ones(len(index.keys), bool)
    others[rows[key]] = False
    return run.keep_documents(others).truncate(k)


def encode_location(encoder: Encoder, location: tuple[float, float]) -> np.ndarray:
    """The (1, D) location embedding of (lon, lat); an encoder without a location tower is an error."""
    if not hasattr(encoder, "encode_locations"):
        raise ConfigError(f"--location needs a model with a location encoder (GeoCLOSP); {encoder.spec.label()} has none")
    return encoder.encode_locations(np.array([location], np.float64))


def _search(index: LoadedIndex, vectors: np.ndarray, k: int, rows: np.ndarray | None, exact: bool):  # noqa: ANN202
    """FAISS top ``k`` (sorted, best first) over ``rows`` (None: all).

    A FAISS ID selector only restricts what IVF and HNSW visit, so a selective filter would
    lose passing rows. An ``exact`` restriction of at most ``EXACT_FILTER_ROWS`` rows is
    therefore scored row by row from the stored embeddings, on every index kind; a larger
    one, or a sensor slice, uses the selector (exact on flat) and widens nprobe / efSearch
    until ``k`` pass."""
    import faiss

    vectors = np.ascontiguousarray(vectors, np.float32)
    if rows is not None and exact and rows.size <= EXACT_FILTER_ROWS:
        return top_rows(vectors, np.asarray(index.embeddings[rows], np.float32), rows, k)
    selector = None if rows is None else faiss.IDSelectorBatch(rows)
    k = min(k, index.faiss_index.ntotal if rows is None else int(rows.size))
    return widening_search(index.faiss_index, index.manifest["index"], vectors, k, selector)


IMAGE_INDEX_ONLY = ("--sensor", "--location", "--like", "--exclude-self")
CAPTION_INDEX_ONLY = ("--min-quality", "--min-resolution", "--max-resolution")


def refuse_unusable_options(index_dir: Path, caption_index: bool, given: Mapping[str, object]) -> None:
    """An option that this kind of index cannot honour is an error, never silently ignored:
    ``--sensor`` or ``--location`` on a caption index, a caption filter (quality, resolution)
    on an image index, whose rows hold no such fields. ``given`` maps option names to values
    (None: not given); ``--bbox`` and ``--near`` serve both kinds."""
    refused = CAPTION_INDEX_ONLY if not caption_index else IMAGE_INDEX_ONLY
    names = [name for name in refused if given.get(name) is not None]
    if names:
        kind, other = ("image", "caption") if caption_index else ("caption", "image")
        verb = "apply" if len(names) > 1 else "applies"
        article = "an" if other == "image" else "a"
        raise ConfigError(f"{', '.join(names)} {verb} to {kind} indexes; {index_dir} is {article} {other} index")
