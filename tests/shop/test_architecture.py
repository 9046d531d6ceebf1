"""Dependencies run one way: core (shop) ← orders ← payments and refunds ← reconciliation, and
no services, selectors, decision or task modules import each other in a cycle. Presentation
(views, API, admin, pages, URLs, commands) sits on top and may use any service."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RANK = {"shop": 0, "orders": 1, "payments": 2, "refunds": 2, "reconciliation": 3}
PRESENTATION = {
    "views", "api", "admin", "urls", "api_urls", "pages", "bench", "serializers",
    "wsgi", "asgi", "celery", "schedules", "context_processors", "management", "metrics_view",
    "gunicorn_conf",
}  # fmt: skip
ASSIGNED_STATUS = re.compile(r"\b(?:attempt|order|refund|locked)\.status\s*=(?!=)")


def _modules() -> dict[str, Path]:
    found = {}
    for app in RANK:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts:
                name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
                found[name.removesuffix(".__init__")] = path
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):  # function-level imports count too
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _is_presentation(module: str) -> bool:
    return bool(set(module.split(".")[1:]) & PRESENTATION)


def test_apps_depend_in_one_direction() -> None:
    wrong = [
        f"{module} -> {dep}"
        for module, deps in _graph().items()
        if not _is_presentation(module)
        for dep in deps
        if RANK[dep.split(".")[0]] > RANK[module.split(".")[0]]
    ]
    assert wrong == []


def test_services_and_tasks_import_each_other_without_cycles() -> None:
    graph = {m: {d for d in deps if not _is_presentation(d)} for m, deps in _graph().items()}
    graph = {m: deps for m, deps in graph.items() if not _is_presentation(m)}
    cycles: list[str] = []
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_only_the_decision_module_writes_payment_state() -> None:
    """No other module assigns or updates ``status`` of an attempt, order or refund."""
    writers = []
    for name, path in _modules().items():
        if name == "payments.decision":
            continue
        text = path.read_text()
        for needle in ("PaymentAttempt.objects", "Order.objects", "Refund.objects"):
            for line in text.splitlines():
                if needle in line and ".update(" in line and "status=" in line.split(".update(")[1]:
                    writers.append(f"{name}: {line.strip()}")
        writers += [f"{name}: {m.group(0)}" for m in ASSIGNED_STATUS.finditer(text)]
    assert writers == []
