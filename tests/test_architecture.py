"""The package's import graph keeps its direction: no cycles, and `settings` is a leaf.

Read from the source with `ast` (imports anywhere in a module, lazy and TYPE_CHECKING ones included),
so the test needs no import of the package and sees edges that only run on some code paths.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlops_platform"


def module_files() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports. `from pkg import sub` is an edge to pkg.sub only:
    every module depends on its parent packages anyway."""
    modules = module_files()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_package_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """Not vacuous: the two pairs this test was written for are reported when put back."""
    graph = import_graph()
    graph["mlops_platform.settings"].add("mlops_platform.server")
    graph["mlops_platform.tracking.run"].add("mlops_platform.tracking.tracker")
    found = cycles(graph)
    assert len(found) == 2
    assert {"mlops_platform.server", "mlops_platform.settings"} <= set(found[0] + found[1])
    assert any({"mlops_platform.tracking.run", "mlops_platform.tracking.tracker"} <= set(c) for c in found)


@pytest.mark.parametrize("leaf", ["mlops_platform.settings", "mlops_platform.errors"])
def test_leaf_modules_import_nothing_from_the_package(leaf: str) -> None:
    assert import_graph()[leaf] == set()


def test_training_never_names_mlflow() -> None:
    """`grep -r mlflow mlops_platform/training` is empty: checkpoints, metric history, the baseline
    search and signatures go through tracking/ and registry/."""
    files = sorted((PACKAGE / "training").rglob("*.py"))
    assert len(files) > 5  # the walk found the package
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "mlflow" in line
    ]
    assert offenders == []


@pytest.mark.parametrize(("lower", "upper"), [("config", "training"), ("tracking", "training")])
def test_lower_layers_do_not_import_upper_ones(lower: str, upper: str) -> None:
    graph = import_graph()
    edges = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith(f"mlops_platform.{lower}")
        for target in targets
        if target.startswith(f"mlops_platform.{upper}")
    }
    assert edges == set()


def test_every_mlops_tag_name_is_written_only_in_tracking_tags() -> None:
    """One home per fact: a string literal starting with "mlops." (a tag name, or a key in the same
    namespace) appears in tracking/tags.py and nowhere else in the package."""
    home = PACKAGE / "tracking" / "tags.py"
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            value = node.value if isinstance(node, ast.Constant) else None
            if isinstance(value, str) and value.startswith("mlops."):
                found.setdefault(path, []).append(f"{node.lineno}: {value}")
    assert home in found  # the check sees the literals where they belong
    elsewhere = {str(path.relative_to(PACKAGE)): lines for path, lines in found.items() if path != home}
    assert elsewhere == {}
