"""Text queries -> encoder -> FAISS top-k -> runs ({query id: {doc key: score}}).

The text encoder is rebuilt from the index manifest, so queries and images always share
one embedding space; asking for a different encoder than the index was built with fails.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rsretrieve.encoders import Encoder, EncoderSpec, load_encoder
from rsretrieve.errors import ConfigError, DataError
from rsretrieve.index import LoadedIndex, search_params
from rsretrieve.io import atomic_path, read_text, write_json

Run = dict[str, dict[str, float]]
QUERY_BATCH = 256


def encoder_for_manifest(
    manifest: Mapping[str, Any], where: Path, requested: EncoderSpec | None = None, device: str | None = None
) -> Encoder:
    """Load the encoder an index was built with; a different ``requested`` spec or changed
    weights is an error, so queries and the index always share one embedding space."""
    spec = EncoderSpec.from_manifest(manifest["encoder"])
    if requested is not None and requested != spec:
        raise ConfigError(
            f"index {where} was built with {spec.label()}; "
            f"you asked for {requested.label()}. Rebuild the index or drop the encoder options"
        )
    encoder = load_encoder(spec, device)
    check_weights(manifest, encoder, where)
    return encoder


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
    scores, rows = _faiss_search(index, vectors, k, sensor)
    return {
        qid: {index.keys[r]: float(s) for s, r in zip(row_scores, row_ids) if r >= 0}
        for qid, row_scores, row_ids in zip(qids, scores, rows)
    }


def search(
    index: LoadedIndex, encoder: Encoder, queries: Mapping[str, str], k: int, sensor: str | None = None
) -> Run:
    qids, vectors = encode_queries(encoder, queries)
    return search_vectors(index, qids, vectors, k, sensor)


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
    params = search_params(settings, selector, k)
    return index.faiss_index.search(np.ascontiguousarray(vectors, np.float32), k, params=params)


def write_run(run: Run, path: Path, tag: str = "rsretrieve") -> None:
    """Write a run: ``.json`` as ranx JSON, anything else as TREC (qid Q0 doc rank score tag)."""
    path = Path(path)
    if path.suffix == ".json":
        write_json(path, run)
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for qid, docs in run.items():
            ranked = sorted(docs.items(), key=lambda item: (-item[1], item[0]))
            for rank, (doc, score) in enumerate(ranked, start=1):
                handle.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")


def read_run(path: Path) -> Run:
    """Read a run written by ``write_run`` (ranx JSON or TREC), with errors naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"run file {path} not found")
    text = read_text(path)
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{path}: invalid JSON run: {exc}") from exc
        try:
            return {str(q): {str(d): float(s) for d, s in docs.items()} for q, docs in data.items()}
        except (AttributeError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: a JSON run maps query id -> {{doc id: score}}") from exc
    run: Run = {}
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise DataError(f"{path}:{number}: a TREC run line has 6 fields (qid Q0 doc rank score tag)")
        try:
            run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
        except ValueError:
            raise DataError(f"{path}:{number}: score '{parts[4]}' is not a number") from None
    return run
