"""The packages form layers: no package imports, at run time, one that imports it back.
A cycle makes the flow unreadable (which runs first?) and breaks on import order; the
driver-level modules (`driver`, `corrections`) sit on top of every package they use."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "pipelines"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The package (pipelines.plan) or top-level module (pipelines.driver) a module is in."""
    return ".".join(module.split(".")[:2])


def _runtime_imports(path: Path) -> set[str]:
    """The pipelines modules `path` imports when it is imported: its top-level imports, not
    those under `if TYPE_CHECKING:` nor those inside functions (imported when called)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipelines"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pipelines")}
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        unit = _unit(_module(path))
        graph.setdefault(unit, set()).update(
            u for u in map(_unit, _runtime_imports(path)) if u != unit)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` (the units on it, first repeated last), or []."""
    state: dict[str, int] = {}   # 1 on the current path, 2 done
    path: list[str] = []

    def visit(unit: str) -> list[str]:
        state[unit] = 1
        path.append(unit)
        for nxt in sorted(graph.get(unit, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[unit] = 2
        path.pop()
        return []

    for unit in sorted(graph):
        if unit not in state:
            found = visit(unit)
            if found:
                return found
    return []


def test_no_package_imports_one_that_imports_it_back():
    cycle = _cycle(_graph())
    assert not cycle, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
