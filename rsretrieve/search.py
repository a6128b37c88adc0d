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

from rsretrieve.encoders import Encoder, EncoderSpec, load_encoder
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.index import LoadedIndex, index_cells, search_params, widen
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


def encode_queries(encoder: Encoder, queries: Mapping[str, str]) -> tuple[list[str], np.ndarray]:
    """Embed query texts once, in batches; the vectors serve every slice's search."""
    qids = list(queries)
    if not qids:
        raise DataError("no queries to search")
    vectors = np.concatenate(
        [encoder.encode_texts([queries[q] for q in qids[i : i + QUERY_BATCH]])
         for i in range(0, len(qids), QUERY_BATCH)]
    )
    return qids, vectors


def search_vectors(
    index: LoadedIndex, qids: list[str], vectors: np.ndarray, k: int, sensor: str | None = None
) -> Run:
    """Top-``k`` documents per query vector, over the whole index or one sensor's rows."""
    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    available = index.faiss_index.ntotal if sensor is None else int(index.sensor_rows(sensor).size)
    want = min(k, available)
    depth = min(want + 1, available)  # one more: does a tie run past the k-th place?
    scores, rows = _faiss_search(index, vectors, depth, sensor)
    lists = [(scores[i, :want], rows[i, :want]) for i in range(len(qids))]
    if depth > want:
        boundary = scores[:, want - 1]
        for i in np.flatnonzero((rows[:, want] >= 0) & (scores[:, want] == boundary)).tolist():
            deeper, row_scores, row_ids = depth, scores[i], rows[i]
            while deeper < available and row_scores[deeper - 1] == boundary[i]:
                deeper = min(available, deeper * 2)
                found = _faiss_search(index, vectors[i : i + 1], deeper, sensor)
                row_scores, row_ids = found[0][0], found[1][0]
            lists[i] = (row_scores, row_ids)
    valid = [ids >= 0 for _, ids in lists]
    offsets = np.concatenate([[0], np.cumsum([int(v.sum()) for v in valid])])
    run = Run(qids, index.keys, offsets, np.concatenate([ids[v] for (_, ids), v in zip(lists, valid)]),
              np.concatenate([sc[v] for (sc, _), v in zip(lists, valid)]).astype(np.float64))
    return run.truncate(want)


def search(
    index: LoadedIndex, encoder: Encoder, queries: Mapping[str, str], k: int, sensor: str | None = None
) -> Run:
    qids, vectors = encode_queries(encoder, queries)
    return search_vectors(index, qids, vectors, k, sensor)


def query_topics(
    queries: Path | None, text: str | None, k: int | None = None, run_out: Path | None = None
) -> tuple[dict[str, str], int]:
    """The queries of ``rsretrieve search`` (a queries file, or one ``text``) and the depth:
    ``k``, else 10 hits to show or, for a run file (checked writable first), the depth
    ``eval`` scores at, so that a saved run is never shallower than eval's cutoffs."""
    from rsretrieve.datasets.queries import load_queries
    from rsretrieve.runs import DEFAULT_DEPTH
    from rsretrieve.io import check_writable

    if (queries is None) == (text is None):
        raise ConfigError("give either --queries FILE or --text TEXT")
    if run_out is not None:
        check_writable(Path(run_out))
    topics = load_queries(Path(queries)) if queries is not None else {"text": str(text)}
    return topics, k if k is not None else (DEFAULT_DEPTH if run_out is not None else 10)


def search_folder(
    folder: Path, queries: Mapping[str, str], k: int, sensor: str | None = None,
    requested: EncoderSpec | None = None, device: str | None = None, nprobe: int | None = None,
    ef_search: int | None = None,
) -> tuple[Run, LoadedIndex]:
    """What ``rsretrieve search`` runs on an image index: open it, load the encoder it was
    built with (``requested`` must match it) and search ``queries`` (only ``sensor``'s
    documents when given: s1, s2 or all), with ``nprobe`` / ``ef_search`` when given."""
    from rsretrieve.datasets.sensors import parse_sensor_filter
    from rsretrieve.index import load_index, override_search

    only = parse_sensor_filter(sensor)[0] if sensor and sensor != "all" else None
    index = load_index(folder)
    index.manifest["index"] = override_search(index.manifest["index"], Path(folder), nprobe, ef_search)
    return search(index, encoder_for_index(index, requested, device), queries, k, only), index


def _faiss_search(index: LoadedIndex, vectors: np.ndarray, k: int, sensor: str | None):  # noqa: ANN202
    import faiss

    settings = index.manifest["index"]
    selector = None
    if sensor is not None:
        rows = index.sensor_rows(sensor)
        if rows.size == 0:
            raise DataError(f"index {index.path} holds no {sensor} samples")
        selector = faiss.IDSelectorBatch(rows)
        k = min(k, int(rows.size))
    k = min(k, index.faiss_index.ntotal)
    vectors = np.ascontiguousarray(vectors, np.float32)
    while True:  # an ID selector only restricts what IVF/HNSW visit: widen until k pass
        scores, rows = index.faiss_index.search(vectors, k, params=search_params(settings, selector, k))
        if selector is None or (rows >= 0).all():
            return scores, rows
        wider = widen(settings, index_cells(index.faiss_index))
        if wider == settings:
            return scores, rows
        settings = wider


def refuse_unusable_options(index_dir: Path, caption_index: bool, sensor: str | None,
                            caption_filters: Mapping[str, object]) -> None:
    """An option that this kind of index cannot honour is an error, never silently ignored:
    ``--sensor`` on a caption index, a caption filter (quality, resolution, ``--bbox``) on an
    image index, whose rows hold no such fields."""
    if caption_index:
        given = ["--sensor"] if sensor is not None else []
        kind, other = "image", "caption"
    else:
        given = [name for name, value in caption_filters.items() if value is not None]
        kind, other = "caption", "image"
    if given:
        verb = "apply" if len(given) > 1 else "applies"
        article = "an" if other == "image" else "a"
        raise ConfigError(f"{', '.join(given)} {verb} to {kind} indexes; {index_dir} is {article} {other} index")
