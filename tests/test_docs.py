"""Every bash example of README.md and docs/*.md runs as written: each page's blocks in order,
in one scratch folder, with the venv on PATH (as the README tells users to put it). A block
that cannot run here (a download, a GPU cluster) is preceded by `<!-- not run: why -->`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- not run: (?P<why>[^>]*?) -->\s*\n)?```bash\n(?P<code>.*?)```", re.S)
LINKED = ("configs", "benchmarks", "scripts", ".venv")  # what examples name by relative path


def blocks(page: Path) -> list[tuple[str | None, str]]:
    return [(m["why"], m["code"]) for m in BLOCK.finditer(page.read_text(encoding="utf-8"))]


def test_every_page_has_examples_and_every_skip_says_why() -> None:
    assert len(PAGES) >= 10
    for page in PAGES:
        found = blocks(page)
        assert all(why is None or why.strip() for why, _ in found), page
        text = page.read_text(encoding="utf-8")
        assert text.count("```bash") == len(found), f"{page}: a bash block the test does not see"


def test_readme_is_a_page() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300


@pytest.mark.docs
@pytest.mark.parametrize("page", [p for p in PAGES if any(why is None for why, _ in blocks(p))],
                         ids=lambda p: p.name)
def test_the_examples_of_a_page_run_as_written(page: Path, tmp_path: Path) -> None:
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    script = "\n".join(code for why, code in blocks(page) if why is None)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=900)
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    assert "Traceback" not in result.stderr, output
