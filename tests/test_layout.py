"""The package's shape, computed from its source: no import cycle, no overlong function.

Both checks read the code with :mod:`ast` (nothing is imported), so they see lazy
imports inside functions too, which only a reading of the source can.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kzr_wsgi"
#: Longest a function may be: from its ``def`` line to its last line, docstring
#: included, decorators not.
MAX_FUNCTION_LINES = 100


def _modules(package: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Every module of the package: dotted name -> (file, is a package's ``__init__``)."""
    found: dict[str, tuple[Path, bool]] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:`` (never run, so never an edge)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute module a relative ``from`` names, seen from ``module``."""
    if not level:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def _nearest(name: str, modules: dict[str, tuple[Path, bool]]) -> str | None:
    """``name`` if it is a module of the package, else its nearest enclosing module."""
    parts = name.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or None


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at module level or inside functions.

    ``from P import n`` is an edge to the module ``P.n`` when that is a module, else to
    ``P``; imports under ``if TYPE_CHECKING:`` are left aside.
    """
    modules = _modules(package)
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, is_package, node.level, node.module)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules
                           else base for alias in node.names]
            for target in targets:
                found = _nearest(target, modules)
                if found is not None and found != name:
                    edges[name].add(found)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles (lazy imports counted):\n" + "\n".join(
        " <-> ".join(component) for component in found)


def test_the_cycle_finder_finds_a_lazy_cycle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import x\n")
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    edges = import_graph(package)
    assert edges["pkg.a"] == {"pkg.sub.b"}
    assert edges["pkg.d"] == set()
    assert cycles(edges) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


def _functions(path: Path) -> list[tuple[str, int]]:
    """Every function in ``path`` with its length (``def`` line to last line)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return [(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}",
             (node.end_lineno or node.lineno) - node.lineno + 1)
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_is_longer_than_a_hundred_lines(path: Path) -> None:
    long = [f"{where} ({length} lines)" for where, length in _functions(path)
            if length > MAX_FUNCTION_LINES]
    assert not long, "\n".join(long)


def untyped_stores(package: Path = PACKAGE) -> list[str]:
    """Where a store is annotated ``Any`` or asked ``hasattr``/``getattr``: the store
    contract (kzr_wsgi.stores.base) says what a store can do."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for tree_node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(tree_node, ast.arg) and "store" in tree_node.arg:
                note = tree_node.annotation
                if isinstance(note, ast.Name) and note.id == "Any":
                    found.append(f"{path.relative_to(package)}:{tree_node.lineno} "
                                 f"{tree_node.arg}: Any")
            if (isinstance(tree_node, ast.Call) and isinstance(tree_node.func, ast.Name)
                    and tree_node.func.id in ("hasattr", "getattr") and tree_node.args
                    and isinstance(tree_node.args[0], ast.Name)
                    and "store" in tree_node.args[0].id):
                found.append(f"{path.relative_to(package)}:{tree_node.lineno} "
                             f"{tree_node.func.id}({tree_node.args[0].id}, …)")
    return found


def test_no_store_is_annotated_any_or_asked_hasattr() -> None:
    assert untyped_stores() == []


def test_the_store_check_finds_an_untyped_store(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "from typing import Any\n\ndef f(store: Any) -> None:\n    hasattr(store, 'x')\n")
    assert untyped_stores(tmp_path) == ["m.py:3 store: Any", "m.py:4 hasattr(store, …)"]
