"""The package's shape: no import circle, no private name imported across packages, no long
function in the checker, and the builder never importing the checker."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "jacverify"
#: The longest function allowed in jacverify/check/ (lines, docstring aside).
MAX_CHECK_FUNCTION_LINES = 60


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(tree: ast.Module, modules: dict) -> set[str]:
    """The jacverify modules a module imports (anywhere in it: lazy imports count)."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name in modules and name.startswith("jacverify"):
                found.add(name)
                break
    return found


def _graph() -> dict[str, set[str]]:
    """Import edges between modules; packages' ``__init__`` re-exports are left out."""
    modules = _modules()
    packages = {p for p in modules if (PACKAGE.parent / p.replace(".", "/")).is_dir()}
    return {
        name: {m for m in _imports(tree, modules) if m not in packages and m != name}
        for name, tree in modules.items() if name not in packages
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_circle():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_builder_never_imports_the_checker():
    graph = _graph()
    offenders = {
        name: sorted(m for m in deps if m.startswith("jacverify.check"))
        for name, deps in graph.items() if name.startswith("jacverify.backward")
    }
    assert not any(offenders.values()), offenders


def test_no_private_name_imported_across_packages():
    crossings = []
    for name, tree in _modules().items():
        source = name.split(".")[:2]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                "jacverify"
            ):
                target = node.module.split(".")[:2]
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if private and source != target:
                        crossings.append(f"{name}: from {node.module} import {alias.name}")
    assert not crossings, crossings


@pytest.mark.parametrize("path", sorted((PACKAGE / "check").rglob("*.py")), ids=str)
def test_no_long_function_in_the_checker(path):
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.end_lineno - node.lineno + 1
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None),
                                                          ast.Constant) and isinstance(
                    first.value.value, str):
                lines -= first.end_lineno - first.lineno + 1
            if lines > MAX_CHECK_FUNCTION_LINES:
                long.append(f"{node.name} ({lines} lines)")
    assert not long, long


#: The one module allowed to import Keras internals.
KERAS_INTERNALS = "jacverify.keras_internals"


def _keras_internal_imports(tree: ast.Module) -> list[str]:
    """The ``keras.src`` modules a module imports (anywhere in it: lazy imports count)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n for n in names[:1] if n == "keras.src" or n.startswith("keras.src.")]
        if isinstance(node, ast.ImportFrom) and node.module == "keras":
            found += [f"keras.{a.name}" for a in node.names if a.name == "src"]
    return found


def test_keras_internals_are_imported_in_one_module():
    offenders = {
        name: imports
        for name, tree in _modules().items()
        if name != KERAS_INTERNALS and (imports := _keras_internal_imports(tree))
    }
    assert not offenders, (
        f"import Keras internals only in {KERAS_INTERNALS} (add what you need there): "
        f"{offenders}"
    )


@pytest.mark.parametrize("source,expected", [
    ("from keras.src.ops import numpy as knp", ["keras.src.ops"]),
    ("def f():\n    from keras.src.layers.layer import CallSpec", ["keras.src.layers.layer"]),
    ("import keras.src.backend", ["keras.src.backend"]),
    ("from keras import src", ["keras.src"]),
    ("import keras\nfrom keras import ops, tree", []),
    ("from jacverify.keras_internals import ops_numpy", []),
])
def test_the_keras_internals_finder(source, expected):
    assert _keras_internal_imports(ast.parse(source)) == expected
