"""The folder tree's promises, checked on the source: imports run one way and never in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
APPS = ("routerhub", "registry", "routing", "evaluation")


def import_graph() -> dict[str, set[str]]:
    """Project module → project modules it imports (anywhere in its body, functions included)."""
    modules = {}
    for app in APPS:
        for path in (PROJECT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(PROJECT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # a package's own __init__ is not an edge: importing a sibling through it is not a cycle
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in graph:
        if node not in index:
            visit(node)
    return found


def edges(graph, source: str, target: str) -> list[tuple[str, str]]:
    return sorted((a, b) for a in graph for b in graph[a] if a.startswith(source) and b.startswith(target))


def test_no_module_imports_itself_through_a_circle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_sees_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_registry_knows_nothing_of_routing_or_evaluation():
    graph = import_graph()
    assert edges(graph, "registry", "routing") == [] and edges(graph, "registry", "evaluation") == []


def test_reads_and_models_never_call_upwards_into_writes_views_or_admin():
    graph = import_graph()
    upward = [
        (a, b)
        for a, b in edges(graph, "routing.", "routing.")
        if a.split(".")[1] in ("selectors", "models")
        and b.split(".")[1] in ("services", "apis", "admin", "tasks", "views")
    ]
    assert upward == []


def test_routing_maths_is_plain_numpy_without_django():
    pure = [PROJECT / "routing" / "selection.py", PROJECT / "routing" / "pacing.py"]
    for path in [*(PROJECT / "routing" / "strategies").glob("*.py"), *pure]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(
                name.split(".")[0] in ("django", "registry", "rest_framework", "celery") for name in names
            ), path
