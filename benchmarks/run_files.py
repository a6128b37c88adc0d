"""Reading large TREC run files, whole processes, beside a bare pyarrow CSV read of the same
file: single spaces (the canonical fast path),
tabs and runs of spaces (normalised onto the same path), the same file through the exact
line-by-line reader (what such files took before), and a file malformed from line 1.

    .venv/bin/python benchmarks/run_files.py [--lines 2000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from processes import measure

READ = "from rsretrieve.runs import read_run; print(len(read_run({path!r}).docs))"
# The bare reference: Arrow's CSV reader on the same file, no validation, no run built.
BARE = ("import pyarrow.csv as c; print(c.read_csv({path!r}, read_options=c.ReadOptions(column_names="
        "['qid', 'q0', 'doc', 'rank', 'score', 'tag']), parse_options=c.ParseOptions(delimiter=' ')).num_rows)")
LINE_BY_LINE = ("from rsretrieve.io import read_text; from rsretrieve.runs import _read_trec_run; "
                "print(len(_read_trec_run({path!r}, read_text({path!r})).docs))")
MALFORMED = ("from rsretrieve.errors import DataError; from rsretrieve.runs import read_run\n"
             "try:\n    read_run({path!r})\nexcept DataError as exc:\n    print(str(exc)[-60:])")


def write_runs(folder: Path, lines: int) -> dict[str, Path]:
    per_query = 1000
    paths = {name: folder / f"{name}.trec" for name in ("spaces", "tabs", "malformed")}
    with open(paths["spaces"], "w") as one, open(paths["tabs"], "w") as tabs, open(paths["malformed"], "w") as bad:
        for row in range(lines):
            q, r = divmod(row, per_query)
            doc, score = f"doc{(q * 7 + r) % 50000}", f"{1 - r / per_query:.6f}"
            one.write(f"q{q} Q0 {doc} {r + 1} {score} run\n")
            tabs.write(f"q{q}\tQ0\t{doc}  {r + 1}\t{score}\trun\n")
            bad.write(f"q{q} Q0 {doc} {r + 1} np.float64({score}) run\n")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_runs(Path(tmp), args.lines)
        cases = [("bare pyarrow.csv.read_csv, single spaces", BARE, "spaces"), ("single spaces", READ, "spaces"), ("tabs, double spaces", READ, "tabs"),
                 ("tabs, line-by-line reader (before)", LINE_BY_LINE, "tabs"), ("malformed from line 1", MALFORMED, "malformed")]
        rows = []
        for label, code, name in cases:
            wall, peak, out = measure([sys.executable, "-c", code.format(path=str(paths[name]))], args.repeats)
            rows.append((label, wall, peak, out.strip()))
    base = rows[1][1]
    print(f"{args.lines:,} lines, median of {args.repeats} fresh processes")
    print("| file | wall (s) | x single spaces | peak RSS (MB) | result |")
    print("|---|---|---|---|---|")
    for label, wall, peak, out in rows:
        print(f"| {label} | {wall:.2f} | {wall / base:.2f} | {peak:.0f} | {out} |")


if __name__ == "__main__":
    main()
