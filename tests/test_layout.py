"""The house: imports only go down between packages, and no source file outgrows a read (issue 17)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "transferkit"
MAX_LINES = 400


def _unit(module: str) -> str:
    """The package (or top-level module) a module belongs to: ``transferkit.data.split`` → ``data``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def package_graph() -> dict[str, set[str]]:
    """Which package imports which (relative imports, top-level and inside functions alike)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        base = parts[:-1]  # the package a relative import starts from (for __init__: the package itself)
        here = _unit(".".join(parts[:-1] if is_package else parts))
        if here == "<root>" or (is_package and len(parts) == 2):  # transferkit/__init__.py re-exports everything
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                anchor = base[: len(base) - (node.level - 1)]
                names = [node.module] if node.module else [a.name for a in node.names]
                for name in names:
                    there = _unit(".".join(anchor + name.split(".")))
                    if there != here:
                        graph[here].add(there)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle_across_packages():
    graph = package_graph()
    assert {"backbones", "data", "strategies", "jobs", "cli"} <= set(graph)  # the graph was read
    assert cycles(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_low_floors_import_nothing_above_them():
    graph = package_graph()
    assert graph["bundle_format"] <= {"_errors", "_utils", "_version"}
    assert not graph["backbones"] & {"data", "training", "features", "strategies", "bundle", "jobs", "cli"}
    assert not graph["transferability"] & {"strategies", "selection", "training", "jobs"}
    assert not graph["jobs"] & {"cli"}


def test_no_source_file_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
