"""The import graph of the project: no cycles, and the packages' architecture rule.

Every ``import`` and ``from ... import`` of every module of ``qdrl_envs``, ``qdrl_agents`` and
``qdrl_bench`` is read with :mod:`ast` (at module level and inside functions alike, so an
import moved into a function to dodge a cycle is still seen). An edge goes to the most specific
project module named: ``from qdrl_bench.store import X`` is an edge to ``qdrl_bench.store``,
``from qdrl_bench import registry`` one to ``qdrl_bench.registry``; the parent packages Python
initialises on the way are not counted (``qdrl_bench.store.memory`` importing
``qdrl_bench.store.contract`` is no edge to ``qdrl_bench.store``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("qdrl_envs", "qdrl_agents", "qdrl_bench")


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's ``__init__``)."""
    out: dict[str, tuple[Path, bool]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            out[".".join(parts)] = (path, is_package)
    return out


MODULES = _modules()


def _imports(path: Path, module: str, is_package: bool) -> Iterator[tuple[str, str | None]]:
    """``(top-level package, project module or None)`` of every name an import statement loads.

    ``import a.b`` loads ``a.b``; ``from a import b`` loads ``a.b`` when that is a project
    module, else ``a`` (``b`` is a name defined there).
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], _project_module(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                yield source.split(".")[0], full if full in MODULES else _project_module(source)


def _project_module(name: str) -> str | None:
    """The most specific project module a dotted name lies in (``None``: not ours)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(edges between project modules, top-level packages each module imports)``."""
    edges: dict[str, set[str]] = {}
    tops: dict[str, set[str]] = {}
    for module, (path, is_package) in MODULES.items():
        found = list(_imports(path, module, is_package))
        edges[module] = {m for _, m in found if m is not None and m != module}
        tops[module] = {top for top, _ in found}
    return edges, tops


EDGES, TOPS = _graph()


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_project() -> None:
    assert {"qdrl_bench.runner", "qdrl_bench.execute", "qdrl_bench.store.sqlite",
            "qdrl_envs.baselines", "qdrl_agents"} <= set(MODULES)
    assert "qdrl_bench.execute" in EDGES["qdrl_bench.executors"]
    assert "qdrl_bench.store" in EDGES["qdrl_bench.runner"]
    assert "qdrl_bench.registry" in EDGES["qdrl_bench.runner"]  # from qdrl_bench import registry
    assert "qdrl_agents" in EDGES["qdrl_bench.registry"]  # an import inside a function counts


def test_cycles_are_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_project_modules() -> None:
    cycles = _cycles(EDGES)
    detail = "; ".join(
        " <-> ".join(c) + " (" + ", ".join(f"{a} -> {b}" for a in c for b in sorted(EDGES[a])
                                          if b in c) + ")"
        for c in cycles)
    assert not cycles, f"import cycles: {detail}"


@pytest.mark.parametrize(("package", "forbidden"), [
    ("qdrl_envs", {"qdrl_agents", "qdrl_bench", "stable_baselines3"}),
    ("qdrl_agents", {"qdrl_envs", "qdrl_bench"}),
])
def test_architecture_rule(package: str, forbidden: set[str]) -> None:
    """``qdrl_envs`` and ``qdrl_agents`` stand alone; only ``qdrl_bench`` binds them."""
    broken = {m: sorted(TOPS[m] & forbidden) for m in MODULES
              if (m == package or m.startswith(f"{package}.")) and TOPS[m] & forbidden}
    assert not broken, f"{package} imports what it must not: {broken}"
