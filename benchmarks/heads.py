"""What a head costs: `rsretrieve index` as whole processes, side by side in one run, with the
3-channel `rgb`/`sar` adapters and with each head (`patch-embed`, `wavelength`) on the same
open_clip backbone. Images/s are corpus images over the whole process's wall time (start,
model load, reading, embedding, writing), and over the embedding stage alone (the manifest's
``embed_s``: what a large corpus converges to), median of the repeats, interleaved so that the
machine's drift falls on every variant alike. A head must index at 0.9x the adapter or more.

    .venv/bin/python benchmarks/heads.py [--model ViT-B-32] [--limit 192] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    "rgb / sar (3-channel adapters)": ("rgb", "sar"),
    "patch-embed (head, init=zero)": ("patch-embed", "patch-embed"),
    "patch-embed:init=mean (head)": ("patch-embed:init=mean", "patch-embed:init=mean"),
    "wavelength (head)": ("wavelength", "wavelength"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--limit", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rsretrieve = str(Path(sys.executable).with_name("rsretrieve"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "clm"
        subprocess.run([rsretrieve, "sample", str(data), "--n-samples", "480"], check=True, capture_output=True)
        walls: dict[str, list[float]] = {name: [] for name in VARIANTS}
        embeds: dict[str, list[float]] = {name: [] for name in VARIANTS}
        counts: dict[str, int] = {}
        for repeat in range(args.repeats):
            for name, (s2, s1) in VARIANTS.items():
                out = Path(tmp) / f"idx-{repeat}-{len(walls[name])}-{s2.replace(':', '_')}"
                started = time.perf_counter()
                subprocess.run([rsretrieve, "index", "--data", str(data), "--model", args.model, "--s2-adapter", s2,
                                "--s1-adapter", s1, "--limit", str(args.limit), "--readers", "1", "--out", str(out)],
                               check=True, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
                walls[name].append(time.perf_counter() - started)
                manifest = json.loads((out / "manifest.json").read_text())
                counts[name] = manifest["counts"]["total"]
                embeds[name].append(manifest["timings"]["embed_s"])
    first = next(iter(VARIANTS))
    base, base_embed = statistics.median(walls[first]), statistics.median(embeds[first])
    print(f"| adapter ({args.model}, {counts[first]} images) | whole process (s) | images/s | ratio | embedding stage (s) "
          "| images/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name in VARIANTS:
        wall, embed = statistics.median(walls[name]), statistics.median(embeds[name])
        print(f"| {name} | {wall:.1f} | {counts[name] / wall:.1f} | {base / wall:.2f} | {embed:.1f} | "
              f"{counts[name] / embed:.1f} | {base_embed / embed:.2f} |")


if __name__ == "__main__":
    main()
