"""Light modules stay light: scoring a saved run or fusing runs loads no model or index code."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "faiss", "open_clip", "ranx", "numba", "h5py", "transformers")


@pytest.mark.parametrize("module", ["rsretrieve.runs", "rsretrieve.fusion", "rsretrieve.metrics", "rsretrieve.evaluate", "rsretrieve.cli.app"])
def test_importing_loads_nothing_heavy(module: str) -> None:
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"import {module} loaded {loaded}"


def test_eval_of_a_saved_run_loads_no_model_code(sample_root, tmp_path) -> None:  # noqa: ANN001
    run = tmp_path / "run.trec"
    run.write_text("q-water Q0 benv2s2_000000 1 0.5 x\n")
    code = (
        "import sys; from rsretrieve.cli.app import app\n"
        f"try: app([ 'eval', '--run', {str(run)!r}, '--qrels', {str(sample_root / 'qrels')!r},"
        f" '--queries', {str(sample_root / 'queries.jsonl')!r}])\n"
        "except SystemExit as e: assert e.code == 0, e.code\n"
        f"print('LOADED', ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "LOADED", out


def _import_graph() -> dict[str, set[str]]:
    """rsretrieve module -> the rsretrieve modules it imports, from every import statement at
    any depth (a function-level import is a dependency too). Importing a module runs its
    parent packages' ``__init__``; that counts, except for packages the importer is inside."""
    import ast
    from pathlib import Path

    root = Path(__import__("rsretrieve").__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], *([base] if base else [])])
                wanted = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in filter(None, (known(w) for w in wanted if w.startswith("rsretrieve"))):
                parents = [".".join(target.split(".")[:i]) for i in range(2, target.count(".") + 1)]
                targets |= {target, *(p for p in parents if p in modules and not name.startswith(p + "."))}
        graph[name] = targets - {name}
    return graph


def test_the_package_has_no_import_circles() -> None:
    graph = _import_graph()
    assert {"rsretrieve.registry", "rsretrieve.evaluate", "rsretrieve.datasets"} <= graph.keys()
    circles = []
    for start in graph:  # a path from a module's imports back to the module itself
        seen, todo = set(), [(t, [start, t]) for t in graph[start]]
        while todo:
            node, path = todo.pop()
            if node == start:
                circles.append(" -> ".join(path))
                break
            if node not in seen:
                seen.add(node)
                todo.extend((t, [*path, t]) for t in graph.get(node, ()))
    assert not circles, "import circles:\n" + "\n".join(sorted(circles))


def test_the_circle_check_sees_function_level_imports() -> None:
    graph = _import_graph()
    assert "rsretrieve.catalog" in graph and "rsretrieve.adapters" in graph["rsretrieve.catalog"]  # imported in a function
    assert "rsretrieve.runs" in graph["rsretrieve.search"]
