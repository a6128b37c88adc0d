"""Full-scale stages, whole processes: `index` (the `random` encoder: the data path) and then
`eval --depth 1000` over a synthetic CrisisLandMark-layout set, at two sizes, extrapolated to the
release's 647,000 patches.

    .venv/bin/python benchmarks/full_scale.py [--sizes 5000,20000] [--compression gzip] [--cache DIR]

The sets come from `rsretrieve sample`: the release's shard names (benv2s2_part1..4.h5,
benv2s1_part1..4.h5, cabuar.h5, sen12flood.h5, mmflood.h5, quakeset.h5), external links from
crisislandmark.h5, 80 % test split, compressed shards. Each stage is one fresh process, timed
with its peak RSS. Two sizes give each cost as fixed + per-patch; the extrapolation says which
grow with the corpus and which do not.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from processes import measure

PYTHON = sys.executable
RSRETRIEVE = str(Path(PYTHON).with_name("rsretrieve"))
RELEASE = 647_000
COUNT = "import sys; from rsretrieve.datasets.crisislandmark import CrisisLandMark; print(len(CrisisLandMark(sys.argv[1]).samples))"


def stages(root: Path, work: Path, readers: int | None, repeats: int) -> dict[str, tuple[float, float]]:
    """Median wall seconds and peak RSS MiB of each stage, ``repeats`` fresh processes each."""
    index = work / "idx"
    extra = ["--readers", str(readers)] if readers else []
    return {
        "index (random encoder)": measure([RSRETRIEVE, "index", "--data", str(root), "--model", "random", "--out",
                                           str(index), "--force", *extra], repeats)[:2],
        "eval --depth 1000": measure([RSRETRIEVE, "eval", "--index", str(index), "--depth", "1000", "-m",
                                 "ndcg@1000,map@100,recall@1000"], repeats)[:2],
    }


def fit(small: tuple[int, float], large: tuple[int, float]) -> tuple[float, float]:
    """(fixed, per patch) of a cost measured at two corpus sizes."""
    (n1, y1), (n2, y2) = small, large
    slope = (y2 - y1) / (n2 - n1)
    return y1 - slope * n1, slope


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="5000,20000", help="two corpus sizes (samples generated; 80 %% are indexed)")
    parser.add_argument("--compression", default="gzip", help="none, gzip, lz4, zstd or blosc")
    parser.add_argument("--readers", type=int, default=None, help="--readers of index [its default]")
    parser.add_argument("--cache", type=Path, default=None, help="keep the generated sets here and reuse them")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if len(sizes) != 2 or sizes[0] >= sizes[1]:
        raise SystemExit("--sizes takes two increasing sizes")
    measured: dict[int, dict[str, tuple[float, float]]] = {}
    corpus: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        for size in sizes:
            root = cache / f"clm-{size}-{args.compression}"
            if not (root / "crisislandmark.h5").is_file():
                subprocess.run([RSRETRIEVE, "sample", str(root), "--n-samples", str(size), "--compression",
                                args.compression, "--force"], check=True, capture_output=True)
            work = Path(tmp) / f"work-{size}"
            work.mkdir()
            measured[size] = stages(root, work, args.readers, args.repeats)
            corpus[size] = int(subprocess.run([PYTHON, "-c", COUNT, str(root)], check=True, capture_output=True,
                                              text=True).stdout)
    print(f"{args.compression} shards, readers {args.readers or 'default'}, median of {args.repeats} runs; "
          "corpus = the test split\n")
    header = " | ".join(f"{corpus[s]:,} patches: s, MiB" for s in sizes)
    print(f"| stage | {header} | fixed s + per 1k patches s | at {RELEASE:,}: s | fixed MiB + per 1k MiB | at {RELEASE:,}: MiB |")
    print("|---|" + "---|" * (len(sizes) + 4))
    for stage in measured[sizes[0]]:
        cells = " | ".join(f"{measured[s][stage][0]:.1f}, {measured[s][stage][1]:.0f}" for s in sizes)
        t0, t1 = fit(*((corpus[s], measured[s][stage][0]) for s in sizes))
        m0, m1 = fit(*((corpus[s], measured[s][stage][1]) for s in sizes))
        time_at = f"{t0 + t1 * RELEASE:.0f}" if t1 > 0 else "no measurable growth"
        memory_at = f"{m0 + m1 * RELEASE:.0f}" if m1 > 0 else "no measurable growth"
        print(f"| {stage} | {cells} | {t0:.1f} + {1000 * t1:.2f} | {time_at} | {m0:.0f} + {1000 * m1:.2f} | {memory_at} |")


if __name__ == "__main__":
    main()
