"""corral.chaos stays a package of small modules with a one-way import graph, and corral.launch
depends on nothing of corral (chaos, the system tests and the benchmarks all import it).

Every import counts: module level, function-local and under ``TYPE_CHECKING``."""

from __future__ import annotations

import ast
from pathlib import Path

import corral

SRC = Path(corral.__file__).parent
MAX_LINES = 700


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, resolved to corral module names where it is one of ours."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _graph(paths: list[Path]) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in paths}
    return {name: _imports(path) & modules.keys() - {name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, or None (depth-first search, colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _chaos_files() -> list[Path]:
    return [*sorted((SRC / "chaos").glob("*.py")), SRC / "launch.py"]


def test_chaos_modules_are_small() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in _chaos_files()}
    assert max(sizes.values()) < MAX_LINES, sizes


def test_chaos_import_graph_has_no_cycle() -> None:
    graph = _graph(_chaos_files())
    assert {"corral.chaos.spec", "corral.chaos.session"} <= graph["corral.chaos.cli"]
    assert "corral.launch" in graph["corral.chaos.target"]
    assert _cycle(graph) is None


def test_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_launch_imports_nothing_of_corral() -> None:
    assert not {n for n in _imports(SRC / "launch.py") if n.startswith("corral")}


def test_chaos_package_init_imports_nothing() -> None:
    """Submodules never import the package, and the package imports no submodule, so no
    parent <-> child edge can close a cycle."""
    assert _imports(SRC / "chaos" / "__init__.py") <= {"__future__"}
