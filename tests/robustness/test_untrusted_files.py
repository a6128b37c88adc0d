"""Untrusted files: nothing in rsretrieve unpickles, and every weight file is safetensors."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "rsretrieve"
UNSAFE = re.compile(r"\bimport pickle\b|\bpickle\.load|\bcloudpickle\b|torch\.load\(|allow_pickle=True|weights_only=False|joblib\.load")


def test_no_code_path_unpickles() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if UNSAFE.search(line)
    ]
    assert offenders == []


def test_shipped_weights_are_safetensors_and_json_only() -> None:
    files = [p for p in (PACKAGE / "weights").rglob("*") if p.is_file()]
    assert files and {p.suffix for p in files} == {".json", ".safetensors"}
