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


def reading_order() -> list[Path]:
    """README.md, then the docs pages in the order of the README's documentation table (the
    order a reader takes them), then any page the table does not list."""
    listed = re.findall(r"^\| \[docs/([\w-]+\.md)\]", (ROOT / "README.md").read_text(encoding="utf-8"), re.M)
    pages = [ROOT / "docs" / name for name in dict.fromkeys(listed)]
    return [ROOT / "README.md", *pages, *sorted(set((ROOT / "docs").glob("*.md")) - set(pages))]


PAGES = reading_order()
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


def test_pages_run_in_the_readmes_order() -> None:
    names = [p.name for p in PAGES]
    assert names[:3] == ["README.md", "datasets.md", "models.md"] and len(names) == len(set(names))
    assert set(PAGES) == {ROOT / "README.md", *(ROOT / "docs").glob("*.md")}


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for every page, as a reader who works through README.md and then the docs
    in order keeps one: a page meets what the pages before it left."""
    folder = tmp_path_factory.mktemp("reader")
    for name in LINKED:
        (folder / name).symlink_to(ROOT / name)
    return folder


@pytest.mark.docs
@pytest.mark.parametrize("page", [p for p in PAGES if any(why is None for why, _ in blocks(p))],
                         ids=lambda p: p.name)
def test_the_examples_of_a_page_run_as_written(page: Path, reader_folder: Path) -> None:
    script = "\n".join(code for why, code in blocks(page) if why is None)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    before = {p.name for p in ROOT.iterdir()}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=reader_folder, env=env,
                            capture_output=True, text=True, timeout=900)
    assert {p.name for p in ROOT.iterdir()} == before, "an example wrote into the repository"
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    assert "Traceback" not in result.stderr, output
