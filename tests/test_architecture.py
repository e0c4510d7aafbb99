"""The folder tree's promises (docs/ARCHITECTURE.md), checked on the source: imports run one way and
never in a circle, selectors never write, views and APIs never touch the ORM, the maths is plain numpy.
Each rule's checker is also shown a small made-up violation, so that a checker that sees nothing
cannot pass for a tree that keeps the rule."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
APPS = ("routerhub", "registry", "routing", "evaluation")


def project_modules() -> dict[str, Path]:
    """Dotted name → file of every module of the apps (migrations left out)."""
    modules = {}
    for app in APPS:
        for path in (PROJECT / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(PROJECT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """Project module → project modules it imports (anywhere in its body, functions included)."""
    modules = project_modules()
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


# --- the rules ------------------------------------------------------------------------------------

# Apps, lowest first: each imports only those before it; routerhub/ (settings, URLs, ASGI, the Celery
# app, the embedded servers) is the top and nothing imports it.
APP_ORDER = ("registry", "routing", "evaluation", "routerhub")

# Layers inside routing/, lowest first. Every other module of routing/ (caches, exceptions,
# strategies/, selection, pacing, upstream/, profiling/, throttling, prompt_text, json_checks,
# metrics, request_log) is a library below every layer: it imports no layer at all.
ROUTING_LAYERS = (
    {"models"},
    {"selectors"},
    {"services"},
    {"apis", "views", "admin", "tasks", "gateway", "management", "urls", "apps", "checks", "signals", "templatetags"},
)

# Pure maths: the standard library, numpy, scipy, scikit-learn and each other only.
PURE_PREFIXES = ("routing.strategies", "routing.selection", "routing.pacing", "routing.caches")
PURE_THIRD_PARTY = {"numpy", "scipy", "sklearn"}

ORM_WRITES = {"save", "create", "bulk_create", "bulk_update", "get_or_create", "update_or_create"}
QUERYSET_WRITES = {"update", "delete"}  # on a queryset: X.objects….update(); dict.update is no write
SHARED_CACHE_WRITES = {
    "set",
    "add",
    "set_many",
    "get_or_set",
    "incr",
    "decr",
    "touch",
    "delete",
    "delete_many",
    "clear",
}


def _app_rank(module: str) -> int:
    return APP_ORDER.index(module.split(".")[0])


def arrows_up_between_apps(graph) -> list[tuple[str, str]]:
    return sorted((a, b) for a in graph for b in graph[a] if _app_rank(b) > _app_rank(a))


def _routing_rank(module: str) -> int:
    package = module.split(".")[1] if module.count(".") else ""
    return next((rank for rank, layer in enumerate(ROUTING_LAYERS) if package in layer), -1)


def arrows_up_between_layers(graph) -> list[tuple[str, str]]:
    """Imports inside routing/ from a lower layer (or a library module) to a higher one."""
    return sorted(
        (a, b)
        for a in graph
        for b in graph[a]
        if a.startswith("routing.") and b.startswith("routing.") and _routing_rank(b) > _routing_rank(a)
    )


def package_graph(graph, app: str = "routing") -> dict[str, set[str]]:
    """The app's packages and top-level modules (routing.apis, routing.caches, …) and their imports."""

    def package(module: str) -> str:
        return ".".join(module.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for a in graph:
        if a.startswith(app + "."):
            targets = {package(b) for b in graph[a] if b.startswith(app + ".")} - {package(a)}
            packages.setdefault(package(a), set()).update(targets)
    for targets in list(packages.values()):
        for target in targets:
            packages.setdefault(target, set())
    return packages


def _imported_names(tree) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def impure_imports(source: str) -> list[str]:
    """What a pure module imports beyond the standard library, numpy/scipy/scikit-learn and the pure modules."""

    def allowed(name: str) -> bool:
        top = name.split(".")[0]
        return (
            top in sys.stdlib_module_names
            or top in PURE_THIRD_PARTY
            or any(name == p or name.startswith(p + ".") for p in PURE_PREFIXES)
        )

    return sorted({name for name in _imported_names(ast.parse(source)) if not allowed(name)} - {"__future__"})


def _shared_cache_names(tree) -> set[str]:
    """Names bound to Django's shared cache in a module (``from django.core.cache import cache``)."""
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "django.core.cache"
        for alias in node.names
        if alias.name in ("cache", "caches")
    }


def _on_queryset(node) -> bool:
    """``X.objects.…`` or a chain of calls such as ``X.objects.filter(…).exclude(…)``."""
    while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Attribute) and node.attr == "objects":
            return True
        node = node.func if isinstance(node, ast.Call) else node.value
    return False


def writes(source: str) -> list[str]:
    """Writes in a module's source: ORM writes, writes to Django's shared cache, INSERT/UPDATE/DELETE SQL."""
    tree = ast.parse(source)
    shared = _shared_cache_names(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method, receiver = node.func.attr, node.func.value
        root = receiver.value if isinstance(receiver, ast.Subscript) else receiver
        if (
            method in ORM_WRITES
            or (method in QUERYSET_WRITES and _on_queryset(receiver))
            or (method in SHARED_CACHE_WRITES and isinstance(root, ast.Name) and root.id in shared)
            or (
                method == "execute"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE")
            )
        ):
            found.append(f"line {node.lineno}: .{method}()")
    return found


def orm_uses(source: str) -> list[str]:
    """Every ``.objects`` in a module's source."""
    return [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr == "objects"
    ]


def _sources(prefixes: tuple[str, ...]) -> dict[str, str]:
    return {
        name: path.read_text()
        for name, path in project_modules().items()
        if any(name == p or name.startswith(p + ".") for p in prefixes)
    }


# --- the tree keeps them --------------------------------------------------------------------------


def test_no_module_imports_itself_through_a_circle():
    assert cycles(import_graph()) == []


def test_no_arrow_runs_up_between_apps():
    assert arrows_up_between_apps(import_graph()) == []


def test_no_arrow_runs_up_between_routing_layers():
    assert arrows_up_between_layers(import_graph()) == []


def test_routing_packages_import_each_other_without_a_circle():
    assert cycles(package_graph(import_graph())) == []


def test_routing_maths_imports_only_numpy_scipy_scikit_learn_and_itself():
    impure = {name: impure_imports(source) for name, source in _sources(PURE_PREFIXES).items()}
    assert {name: found for name, found in impure.items() if found} == {}


def test_selectors_never_write():
    found = {
        name: writes(source)
        for name, source in _sources(("routing.selectors", "registry.selectors", "evaluation.selectors")).items()
    }
    assert {name: w for name, w in found.items() if w} == {}


def test_views_and_apis_never_touch_the_orm_directly():
    found = {
        name: orm_uses(source)
        for name, source in _sources(
            ("routing.apis", "routing.views", "routing.gateway.views", "evaluation.views")
        ).items()
    }
    assert {name: uses for name, uses in found.items() if uses} == {}


# --- and each checker sees a violation ------------------------------------------------------------


def test_the_cycle_finder_sees_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_an_arrow_up_between_apps_is_seen():
    graph = {"registry.models": {"routerhub.secrets"}, "routing.views": {"registry.models"}, "routerhub.secrets": set()}
    assert arrows_up_between_apps(graph) == [("registry.models", "routerhub.secrets")]


def test_an_arrow_up_between_layers_is_seen():
    graph = {
        "routing.selectors.tenancy": {"routing.services.tenancy", "routing.models"},
        "routing.strategies.knn": {"routing.models"},
        "routing.apis.usage": {"routing.selectors.usage", "routing.caches"},
        "routing.services.tenancy": {"routing.signals"},
    }
    assert arrows_up_between_layers(graph) == [
        ("routing.selectors.tenancy", "routing.services.tenancy"),
        ("routing.services.tenancy", "routing.signals"),
        ("routing.strategies.knn", "routing.models"),
    ]


def test_packages_importing_each_other_are_seen():
    graph = {
        "routing.apis.gateway": {"routing.gateway.calls"},
        "routing.gateway.calls": {"routing.apis.throttling"},
        "routing.apis.throttling": set(),
        "routing.views.login": {"routing.apis.throttling"},
    }
    assert cycles(package_graph(graph)) == [["routing.apis", "routing.gateway"]]


def test_an_impure_import_in_the_maths_is_seen():
    source = (
        "import math\nimport numpy as np\nfrom sklearn.cluster import KMeans\nfrom routing.strategies.base import X\n"
    )
    assert impure_imports(source) == []
    assert impure_imports(source + "from django.conf import settings\nfrom evaluation.metrics import area\n") == [
        "django.conf",
        "django.conf.settings",
        "evaluation.metrics",
        "evaluation.metrics.area",
    ]


def test_a_write_in_a_selector_is_seen():
    source = """
from django.core.cache import cache
counts.update(words)
ApiKey.objects.filter(id=1).update(last_used_at=now)
row.save()
cache.set("key", 1)
local_cache.set("key", 1)
cursor.execute("UPDATE routing_apikey SET last_used_at = now()")
cursor.execute("SELECT 1")
"""
    assert writes(source) == ["line 4: .update()", "line 5: .save()", "line 6: .set()", "line 8: .execute()"]


def test_the_orm_in_a_view_is_seen():
    source = "def page(request):\n    tenant = selectors.tenant_by_name(name='a')\n    return Tenant.objects.filter(name='a')\n"
    assert orm_uses(source) == ["line 3: Tenant.objects"]
