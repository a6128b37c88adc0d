"""The CLI stays a thin layer: each command body is argument parsing, a library call and
rendering; the work lives in library functions that the other tests call directly."""

import ast
from pathlib import Path

import rsretrieve.cli.app as app_module

SOURCE = Path(app_module.__file__).read_text()
# Helpers of app.py that parse options or show progress; anything else belongs in the library.
HELPERS = {"_version", "_root", "_spec", "_requested", "_parse_shard", "_default_index", "main"}
MAX_STATEMENTS = 13  # statements in a command body, nested ones included, imports and docstring not


def _commands() -> list[ast.FunctionDef]:
    tree = ast.parse(SOURCE)
    return [n for n in tree.body if isinstance(n, ast.FunctionDef) and any("command" in ast.unparse(d) for d in n.decorator_list)]


def _work(node: ast.FunctionDef) -> list[ast.stmt]:
    body = [s for s in node.body if not isinstance(s, (ast.Import, ast.ImportFrom))
            and not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return [x for s in body for x in ast.walk(s) if isinstance(x, ast.stmt)]


def test_every_command_body_is_short() -> None:
    commands = _commands()
    assert len(commands) >= 16
    long = {c.name: len(_work(c)) for c in commands if len(_work(c)) > MAX_STATEMENTS}
    assert not long, f"commands doing library work: {long}"


def test_the_cli_defines_no_library_helpers() -> None:
    tree = ast.parse(SOURCE)
    commands = {c.name for c in _commands()}
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert functions - commands <= HELPERS, f"move into the library: {sorted(functions - commands - HELPERS)}"


def test_commands_import_only_public_library_names() -> None:
    private = [f"{n.module}.{a.name}" for n in ast.walk(ast.parse(SOURCE)) if isinstance(n, ast.ImportFrom)
               for a in n.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not private, private
