"""Per-query retrieval metrics from two interchangeable backends that give equal numbers.

``trec_eval`` (default): pytrec_eval, the reference trec_eval compiled as a Python
extension, with no JIT. ``ranx``: the numba kernels of ranx, fed ranks instead of raw
scores so that it follows the same ranking rule (ranx alone keeps insertion order on ties).

Metric names (ranx's, with an optional ``@k``) and their trec_eval measures:

=================  ===============================  =====================================
name               with @k                          without a cutoff
=================  ===============================  =====================================
ndcg               ndcg_cut_k (linear gains)        ndcg
ndcg_burges        ndcg_cut_k on gains 2^rel - 1    ndcg on gains 2^rel - 1
map                map_cut_k                        map
precision          P_k                              set_P
recall             recall_k                         set_recall
f1                 2 P_k recall_k / (P_k + recall_k)  set_F
hits               P_k * k                          num_rel_ret
hit_rate           success_k                        num_rel_ret > 0
mrr                recip_rank of the top k          recip_rank
r-precision        (no cutoff)                      Rprec
=================  ===============================  =====================================

Relevance follows trec_eval: a grade of 1 or more is relevant, 0 and negative grades are not.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsretrieve.errors import ConfigError
from rsretrieve.registry import Registry, did_you_mean
from rsretrieve.runs import Run, as_run

Qrels = Mapping[str, Mapping[str, int]]
PerQuery = dict[str, np.ndarray]  # metric name -> values aligned with the scored query ids
METRIC_NAMES = ("hits", "hit_rate", "precision", "recall", "f1", "r-precision", "mrr", "map", "ndcg", "ndcg_burges")
_METRIC = re.compile(r"^(?P<name>[a-z0-9_\-]+?)(@(?P<k>\d+))?$")
CHUNK = 500  # queries converted to dictionaries at a time (bounds memory at any depth)


@dataclass(frozen=True)
class Metric:
    name: str
    k: int | None

    @property
    def label(self) -> str:
        return self.name if self.k is None else f"{self.name}@{self.k}"


def parse_metric(label: str) -> Metric:
    """``ndcg@10``, in any case (``nDCG@10``, ``MAP@100``): the canonical names are lower case."""
    match = _METRIC.match(label.strip().lower())
    base = match.group("name") if match else label
    if base not in METRIC_NAMES:
        raise ConfigError(
            f"unknown metric '{label}'.{did_you_mean(base, METRIC_NAMES)} "
            f"Known: {', '.join(METRIC_NAMES)} (with an optional @k cutoff)"
        )
    k = match.group("k") if match else None
    if k is not None and int(k) < 1:
        raise ConfigError(f"metric '{label}': the cutoff must be at least 1")
    if k is not None and base == "r-precision":
        raise ConfigError(f"metric '{label}': r-precision takes no cutoff (its cutoff is each query's number of relevant documents)")
    return Metric(base, None if k is None else int(k))


Scorer = Callable[[Qrels, Run, Sequence[Metric], Sequence[str]], PerQuery]
BACKENDS: Registry[Scorer] = Registry("metric backend", "rsretrieve.metric_backends")


def register_backend(name: str) -> Callable[[Scorer], Scorer]:
    """Add a metric backend: ``fn(qrels, run, metrics, qids) -> {label: values aligned with qids}``."""
    return BACKENDS.register(name)


def per_query(qrels: Qrels, run: Run, metrics: Sequence[str], qids: Sequence[str], backend: str = "trec_eval") -> PerQuery:
    """Values of each metric for each of ``qids`` (queries absent from the run score 0)."""
    return BACKENDS.get(backend)(qrels, run, [parse_metric(m) for m in metrics], qids)


# trec_eval ------------------------------------------------------------------------------

# metric name -> (measure with a cutoff, measure without one)
_TREC = {
    "ndcg": ("ndcg_cut", "ndcg"), "ndcg_burges": ("ndcg_cut", "ndcg"), "map": ("map_cut", "map"),
    "precision": ("P", "set_P"), "recall": ("recall", "set_recall"), "f1": ("P recall", "set_F"),
    "hits": ("P", "num_rel_ret"), "hit_rate": ("success", "num_rel_ret"), "mrr": ("recip_rank", "recip_rank"),
    "r-precision": ("Rprec", "Rprec"),
}


@register_backend("trec_eval")
def trec_eval_scores(qrels: Qrels, run: Run, metrics: Sequence[Metric], qids: Sequence[str]) -> PerQuery:
    """pytrec_eval, one evaluator per (gain scheme, truncation), queries in chunks."""
    import pytrec_eval

    # Group the trec_eval measures each metric needs by the evaluation they come from:
    # burges gains need their own qrels, mrr@k its own truncated run.
    groups: dict[tuple[bool, int | None], dict[str, set[int]]] = {}
    for metric in metrics:
        burges = metric.name == "ndcg_burges"
        truncate = metric.k if metric.name == "mrr" else None
        measures = groups.setdefault((burges, truncate), {})
        names = _TREC[metric.name][0 if metric.k is not None else 1]
        for measure in names.split():
            cutoffs = measures.setdefault(measure, set())
            if metric.k is not None and measure not in ("recip_rank", "Rprec"):
                cutoffs.add(metric.k)
    raw: dict[tuple[bool, int | None], dict[str, dict[str, float]]] = {}
    for (burges, truncate), measures in groups.items():
        judged = {q: dict(qrels.get(q, {})) for q in qids}
        if burges:
            judged = {q: {d: (2**r - 1 if r > 0 else r) for d, r in docs.items()} for q, docs in judged.items()}
        evaluator = pytrec_eval.RelevanceEvaluator(
            judged, {m if not c else f"{m}.{','.join(map(str, sorted(c)))}" for m, c in measures.items()}
        )
        source = run.truncate(truncate) if truncate is not None else run
        present = [q for q in qids if q in source]
        values: dict[str, dict[str, float]] = {}
        for start in range(0, len(present), CHUNK):
            values.update(evaluator.evaluate(source.to_dict(present[start : start + CHUNK])))
        raw[(burges, truncate)] = values
    out: PerQuery = {}
    for metric in metrics:
        values = raw[(metric.name == "ndcg_burges", metric.k if metric.name == "mrr" else None)]
        out[metric.label] = np.array([_trec_value(metric, values.get(q)) for q in qids], dtype=np.float64)
    return out


def _trec_value(metric: Metric, measured: Mapping[str, float] | None) -> float:
    if not measured:
        return 0.0  # a query absent from the run (trec_eval -c)
    k, name = metric.k, metric.name
    if k is None:
        value = measured[_TREC[name][1]]
        return float(value > 0) if name == "hit_rate" else value
    if name in ("mrr", "r-precision"):
        return measured[_TREC[name][0]]
    if name == "f1":
        p, r = measured[f"P_{k}"], measured[f"recall_{k}"]
        return 2 * p * r / (p + r) if p + r > 0 else 0.0
    if name == "hits":
        return float(round(measured[f"P_{k}"] * k))
    return measured[f"{_TREC[name][0]}_{k}"]


# ranx -----------------------------------------------------------------------------------

_EMPTY = "\x00rsretrieve-no-results"  # placeholder document for a query absent from the run
CODE_WIDTH = 12


class DocCodes:
    """Document ids as ranx gets them: fixed-width codes (``000000000042``). ranx turns ids into
    numpy arrays of fixed-width strings, and numba compiles its kernels again for every new
    width (20 s or more each on 2 cores); with one width, the kernels that ``compile_ranx``
    compiled at install serve every dataset. ``name`` maps a code back."""

    def __init__(self) -> None:
        self._codes: dict[str, str] = {}
        self._names: list[str] = []

    def __call__(self, doc: str) -> str:
        code = self._codes.get(doc)
        if code is None:
            code = self._codes[doc] = f"{len(self._names):0{CODE_WIDTH}d}"
            self._names.append(doc)
        return code

    def name(self, code: str) -> str:
        return self._names[int(code)]


@register_backend("ranx")
def ranx_scores(qrels: Qrels, run: Run, metrics: Sequence[Metric], qids: Sequence[str]) -> PerQuery:
    """ranx, given each document's rank as its score so that ties follow trec_eval's rule."""
    from ranx import evaluate

    from rsretrieve.kernels import ensure_ranx

    ensure_ranx()
    missing = [q for q in qids if not any(r > 0 for r in qrels.get(q, {}).values())]
    if missing:
        raise ConfigError(f"the ranx backend scores only queries with a relevant document; '{missing[0]}' has none")
    codes = DocCodes()
    relevant = ranx_qrels(qrels, qids, codes)
    ranked = ranx_run(run, qids, codes=codes)
    labels = [m.label for m in metrics]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba type-safety chatter from ranx kernels
        evaluate(relevant, ranked, labels)
    return {label: np.array([float(ranked.scores[label][q]) for q in qids], dtype=np.float64) for label in labels}


def ranx_qrels(qrels: Qrels, qids: Sequence[str], codes: DocCodes) -> Any:
    """A ranx Qrels of the relevant judgements (grade 1 or more) of ``qids``, ids as ``codes``."""
    from ranx import Qrels as RanxQrels

    return RanxQrels({q: {codes(d): r for d, r in qrels.get(q, {}).items() if r > 0} for q in qids})


def ranx_run(run: Run | Mapping[str, Mapping[str, float]], qids: Sequence[str], name: str | None = None,
             codes: DocCodes | None = None) -> Any:
    """A ranx Run of ``qids`` whose scores are ranks (depth, depth - 1, ...), so that ranx's
    ordering is the ranking rule's whatever ties the scores had; ids as ``codes`` when given."""
    from ranx import Run as RanxRun

    run = as_run(run)
    ranked: dict[str, dict[str, float]] = {}
    for q in qids:
        docs = [d for d, _ in run.ranked(q)] or [_EMPTY]
        ranked[q] = {(codes(d) if codes else d): float(len(docs) - i) for i, d in enumerate(docs)}
    return RanxRun(ranked, name=name)
