"""The benchmark scenarios by name: ``manage.py bench <name>`` runs one, ``all`` runs each.

Each entry is ``module:function``; the function takes ``tiny`` (seconds-long sizes, for the
suite's smoke run) and a ``write`` for its table, and runs inside a process whose database,
Redis key prefix and metrics directory are scratch ones made for it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Protocol

from shop.bench.core import Write


class Scenario(Protocol):
    def __call__(self, *, tiny: bool, write: Write) -> None: ...


SCENARIOS: dict[str, str] = {
    "callbacks": "shop.bench.callbacks:run_unique",
    "duplicates": "shop.bench.callbacks:run_duplicates",
    "hot-order": "shop.bench.hot_order:run",
    "poll-sweep": "shop.bench.sweeps:run_poll",
    "expiry-sweep": "shop.bench.sweeps:run_expiry",
    "reconciliation": "shop.bench.reconcile:run",
}


def scenario(name: str) -> Scenario:
    module, function = SCENARIOS[name].split(":")
    found: Scenario = getattr(import_module(module), function)
    return found
