"""Evaluation speed and memory: `rsretrieve eval --run` against a bare pytrec_eval script.

    .venv/bin/python benchmarks/evaluation.py [--queries 1000] [--depth 1000] [--corpus 100000] [--repeats 3]

Side by side in one run, each command a fresh process (wall time and peak RSS of the whole
process, median of --repeats):
- `rsretrieve eval --run RUN` on saved slice runs (all, s1, s2: what `eval --index --save-run`
  writes) of --queries x --depth, default metrics;
- `benchmarks/trec_reference.py RUN`, the bare pytrec_eval script computing the same slices
  and metrics from the same files (it imports nothing of rsretrieve);
- `rsretrieve eval --run` on the embedded sample's saved runs (384 documents, 12 queries).
The two must print the same numbers (checked here, to 1e-6).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from processes import measure

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
RSRETRIEVE = str(Path(PYTHON).with_name("rsretrieve"))


def make_topics(folder: Path, n_queries: int, depth: int, n_docs: int) -> Path:
    """Queries, graded qrels, a corpus of S1 and S2 keys and its saved slice runs."""
    from rsretrieve.evaluate import Corpus, save_slice_runs
    from rsretrieve.runs import Run

    rng = np.random.default_rng(0)
    keys = [f"{'benv2s1' if i % 2 else 'benv2s2'}_{i:08d}" for i in range(n_docs)]
    sensors = ["s1" if i % 2 else "s2" for i in range(n_docs)]
    qids = [f"q{i}" for i in range(n_queries)]
    with open(folder / "queries.jsonl", "w") as handle:
        handle.writelines(json.dumps({"_id": q, "text": f"query {q}"}) + "\n" for q in qids)
    (folder / "qrels").mkdir()
    with open(folder / "qrels" / "test.tsv", "w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for q in qids:
            for doc in rng.choice(n_docs, 30, replace=False):
                handle.write(f"{q}\t{keys[doc]}\t{rng.integers(0, 3)}\n")
    runs = {}
    for name, pool in (("all", np.arange(n_docs)), ("s1", np.arange(1, n_docs, 2)), ("s2", np.arange(0, n_docs, 2))):
        rows = np.stack([rng.choice(pool, depth, replace=False) for _ in qids])
        scores = np.sort(rng.random((n_queries, depth)).astype(np.float32), axis=1)[:, ::-1]
        runs[name] = Run.from_search(qids, scores, rows, keys)
    save_slice_runs(runs, Corpus.from_keys(keys, sensors), folder / "run.trec", {})
    return folder / "run.trec"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--corpus", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run = make_topics(folder, args.queries, args.depth, args.corpus)
        ours_cmd = [RSRETRIEVE, "eval", "--run", str(run), "--qrels", str(folder / "qrels"),
                    "--queries", str(folder / "queries.jsonl"), "--out", str(folder / "ours.json")]
        bare_cmd = [PYTHON, str(HERE / "trec_reference.py"), str(run), str(folder / "qrels")]
        ours = measure(ours_cmd, args.repeats)
        bare = measure(bare_cmd, args.repeats)
        ranx = measure([*ours_cmd, "--backend", "ranx"], 1)
        report = json.loads((folder / "ours.json").read_text())
        theirs = json.loads(bare[2])
        worst = max(abs(report["results"][s]["scores"][m] - v) for s, scores in theirs.items() for m, v in scores.items())
        sample = sample_eval(folder, args.repeats)
    print(f"{args.queries} queries x depth {args.depth}, 3 slices, corpus {args.corpus:,}, 8 metrics; "
          f"fresh processes, median of {args.repeats}\n")
    print("| command | wall (s) | peak RSS (MiB) | ratio to bare |\n|---|---|---|---|")
    print(f"| bare pytrec_eval script (benchmarks/trec_reference.py) | {bare[0]:.2f} | {bare[1]:.0f} | 1.00 |")
    print(f"| rsretrieve eval --run (trec_eval backend) | {ours[0]:.2f} | {ours[1]:.0f} | {ours[0] / bare[0]:.2f} |")
    print(f"| rsretrieve eval --run --backend ranx (one run) | {ranx[0]:.2f} | {ranx[1]:.0f} | {ranx[0] / bare[0]:.2f} |")
    print(f"| rsretrieve eval --run, embedded sample (384 docs, 12 queries) | {sample[0]:.2f} | {sample[1]:.0f} | |")
    print(f"\nlargest difference to the bare script over every slice and metric: {worst:.1e}")
    if worst > 1e-6:
        raise SystemExit("rsretrieve and pytrec_eval disagree")


def sample_eval(folder: Path, repeats: int) -> tuple[float, float, str]:
    """`eval --run` on the embedded sample's saved slice runs (default model)."""
    from rsretrieve.datasets.fixtures.crisislandmark import ensure_default_sample

    root = ensure_default_sample()
    run = folder / "sample" / "run.trec"
    subprocess.run([RSRETRIEVE, "eval", "--save-run", str(run), "--out", str(folder / "sample.json")],
                   capture_output=True, check=True)
    return measure([RSRETRIEVE, "eval", "--run", str(run), "--qrels", str(root / "qrels"),
                    "--queries", str(root / "queries.jsonl"), "--out", str(folder / "sample2.json")], repeats)


if __name__ == "__main__":
    main()
