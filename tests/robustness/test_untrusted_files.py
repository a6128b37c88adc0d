"""Untrusted files: nothing in rsretrieve unpickles, and every weight file is safetensors."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "rsretrieve"
# torch.load is allowed only as torch.load(..., weights_only=True) on one line (tensors, no code).
UNSAFE = re.compile(
    r"\bimport pickle\b|\bpickle\.load|\bcloudpickle\b|torch\.load\((?![^)]*weights_only=True\))|allow_pickle=True"
    r"|weights_only=False|joblib\.load"
)


def test_no_code_path_unpickles() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if UNSAFE.search(line)
    ]
    assert offenders == []


def test_the_unpickling_check_can_fail() -> None:
    assert UNSAFE.search("x = torch.load(path)") and UNSAFE.search("torch.load(p, weights_only=False)")
    assert not UNSAFE.search('data = torch.load(file, map_location="cpu", weights_only=True)')


def test_shipped_weights_are_safetensors_and_json_only() -> None:
    files = [p for p in (PACKAGE / "weights").rglob("*") if p.is_file()]
    assert files and {p.suffix for p in files} == {".json", ".safetensors"}
