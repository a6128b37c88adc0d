"""Encoding precision on the embedded sample: bf16 and fp16 (torch autocast) against fp32.

    .venv/bin/python benchmarks/precision.py [--model rsretrieve-default] [--device cpu]

Indexes the embedded sample once per precision with `rsretrieve index --precision P` (whole
processes) and reports, against fp32: the lowest and the median cosine similarity of a
patch's two embeddings, ndcg@10 from `rsretrieve eval`, and the wall time of `index`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from processes import measure

PYTHON = sys.executable
RSRETRIEVE = str(Path(PYTHON).with_name("rsretrieve"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="rsretrieve-default")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16", "fp16"):
            out = Path(tmp) / precision
            wall, _, _ = measure([RSRETRIEVE, "index", "--model", args.model, "--device", args.device,
                                  "--precision", precision, "--out", str(out)], 1)
            measure([RSRETRIEVE, "eval", "--index", str(out), "-m", "ndcg@10", "--device", args.device], 1)
            ndcg = json.loads(Path(f"{out}.results.json").read_text())["results"]["all"]["scores"]["ndcg@10"]
            rows.append((precision, wall, np.load(out / "embeddings.npy"), ndcg))
    base = rows[0][2]
    print(f"model {args.model}, device {args.device}, embedded sample ({len(base)} corpus patches)\n")
    print("| precision | lowest cosine to fp32 | median cosine | ndcg@10 (all) | difference | index wall s |")
    print("|---|---|---|---|---|---|")
    for precision, wall, vectors, ndcg in rows:
        cosine = np.sum(vectors * base, axis=1)
        print(f"| {precision} | {cosine.min():.6f} | {np.median(cosine):.6f} | {ndcg:.4f} | {ndcg - rows[0][3]:+.4f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
