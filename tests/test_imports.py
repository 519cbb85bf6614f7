"""The package's modules import one another one way only: the import graph of harness/ (every import
statement, at module level or inside a function, so a deferred import cannot hide a circle) has no cycle."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from importlib.util import resolve_name
from pathlib import Path

import pytest

import harness

ROOT = Path(harness.__file__).parent


def _modules() -> dict[str, Path]:
    """Module name -> file, for every module of the package (a package is its __init__.py)."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from m import name`` imports m.name where that is a
    module, else m)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = resolve_name("." * node.level + (node.module or ""), package)
                targets = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def test_the_package_has_no_import_cycle():
    try:
        TopologicalSorter(import_graph()).prepare()
    except CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")


def test_the_graph_sees_deferred_imports_and_the_layers_point_down():
    """The backends' table loads the mnist module inside a function; the report reads the sections, which
    draw with harness.layout; the denoisers and the layout import neither back."""
    graph = import_graph()
    assert "harness.denoisers.mnist" in graph["harness.backends"]
    assert "harness.sections" in graph["harness.report.cases"]
    assert "harness.layout" in graph["harness.sections.part_a"]
    assert "harness.backends" not in graph["harness.denoisers.mnist"]
    assert not {m for m in graph["harness.layout"] if m.startswith(("harness.report", "harness.sections"))}
