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
    .venv/bin/python -m pip install --quiet --upgrade pip
    # torch/torchvision are pinned in pyproject.toml to the pair on this machine's disk.
    .venv/bin/python -m pip install --quiet -e '.[test]'
    # ranx's numba kernels compile on first use (about a minute on 2 cores) and are cached in
    # .venv: do it now, so that no later fuse, leaderboard or test run waits on it silently.
    echo "compiling ranx's numba kernels once (cached in .venv)"
    .venv/bin/python -c "from rsretrieve.fusion import compile_ranx; print(f'compiled in {compile_ranx():.0f} s')"
    echo "$want" > "$stamp"
fi
