#!/usr/bin/env bash
# Create .venv and install rsretrieve with its test extras; a no-op when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.rsretrieve-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    # torch/torchvision are pinned in pyproject.toml to the pair on this machine's disk.
    .venv/bin/python -m pip install --quiet -e '.[test]'
    # ranx's numba kernels are not compiled here: the first fuse, leaderboard or
    # eval --backend ranx compiles them once, saying so (rsretrieve/kernels.py).
    echo "$want" > "$stamp"
fi
