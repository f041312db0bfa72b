"""The shape of the package, checked: small classes and functions, no private name imported
from another module, no import cycle. (That the core never imports click or rich is
test_imports.py's.)"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "fetcher"
MAX_CLASS_LINES = 150
MAX_FUNCTION_LINES = 40


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def span(node: ast.AST) -> int:
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])  # type: ignore[attr-defined]
    return node.end_lineno - first + 1  # type: ignore[attr-defined,no-any-return]


def test_no_class_or_function_is_too_long():
    too_long = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and span(node) > MAX_CLASS_LINES:
                too_long.append(f"{name}.{node.name}: class of {span(node)} lines")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if span(node) > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: function of {span(node)} lines")
    assert too_long == []


def imports_of(name: str, tree: ast.Module) -> list[tuple[str, str | None]]:
    """(module, imported name or None) for every fetcher import, wherever it is."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fetcher"):
            for alias in node.names:
                found.append((node.module, alias.name))
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("fetcher")]
    return found


def test_no_module_imports_a_private_name_of_another():
    private = [
        f"{name} imports {module}.{imported}"
        for name, tree in modules().items()
        for module, imported in imports_of(name, tree)
        if imported is not None and imported.startswith("_") and not imported.startswith("__")
    ]
    assert private == []


def test_the_import_graph_has_no_cycle():
    trees = modules()
    graph: dict[str, set[str]] = {name: set() for name in trees}
    for name, tree in trees.items():
        for module, imported in imports_of(name, tree):
            target = f"{module}.{imported}" if f"{module}.{imported}" in trees else module
            if target in trees and target != name:
                graph[name].add(target)
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_checks_see_the_package():
    assert len(modules()) > 20 and Path(PACKAGE / "run").is_dir()


def test_the_package_ships_every_subpackage():
    """An installed fetcher needs fetcher/http, fetcher/run...: a plain `packages = ["fetcher"]`
    built a wheel without them while editable installs hid it."""
    import tomllib

    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = set(find_packages(str(ROOT), include=include))
    folders = {
        ".".join(path.parent.relative_to(ROOT).parts) for path in PACKAGE.rglob("__init__.py")
    }
    assert folders <= shipped and {"fetcher.run", "fetcher.http"} <= folders
