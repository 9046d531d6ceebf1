"""What ``/healthz`` checks, and the liveness marks the Celery worker and beat leave for it.

A Celery worker marks itself alive from its own event loop, and beat from its scheduler's tick,
every ``HEALTH_HEARTBEAT_SECONDS``: one sorted set per component under ``REDIS_KEY_PREFIX``,
member = who (host and pid), score = Redis's own clock, so the stack's processes need not agree
on the time and two stacks on one Redis never see each other's workers. A mark older than
``HEALTH_STALE_SECONDS`` does not count; a process that stops cleanly takes its mark back at
once. Reading the marks is one round trip, so ``/healthz`` stays fast.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django_redis import get_redis_connection

logger = logging.getLogger(__name__)

COMPONENTS = ("worker", "beat")


def liveness_member() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _liveness_key(component: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}:health:{component}"


def _redis_now(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds) + micros / 1_000_000


def liveness_mark(*, component: str, member: str) -> None:
    """Record that ``member`` (a worker or a beat) is alive now; drop marks long gone stale."""
    client = get_redis_connection("default")
    now = _redis_now(client)
    stale = float(settings.HEALTH_STALE_SECONDS)
    key = _liveness_key(component)
    pipe = client.pipeline(transaction=False)
    pipe.zadd(key, {member: now})
    pipe.zremrangebyscore(key, "-inf", now - 10 * stale)
    pipe.expire(key, int(10 * stale) + 1)
    pipe.execute()


def liveness_forget(*, component: str, member: str) -> None:
    """A process that stops cleanly says so at once rather than going stale."""
    get_redis_connection("default").zrem(_liveness_key(component), member)


@dataclass(frozen=True)
class Liveness:
    alive: int
    last_seen_seconds: float | None  # since the freshest mark; None: no mark at all

    def as_json(self) -> dict[str, Any]:
        age = None if self.last_seen_seconds is None else round(self.last_seen_seconds, 1)
        return {"ok": self.alive > 0, "alive": self.alive, "last_seen_seconds": age}


def liveness_read() -> dict[str, Liveness]:
    """Each component's fresh marks, read in one round trip."""
    client = get_redis_connection("default")
    pipe = client.pipeline(transaction=False)
    pipe.time()
    for component in COMPONENTS:
        pipe.zrange(_liveness_key(component), 0, -1, withscores=True)
    (seconds, micros), *marks = pipe.execute()
    now = float(seconds) + micros / 1_000_000
    stale = float(settings.HEALTH_STALE_SECONDS)
    found = {}
    for component, entries in zip(COMPONENTS, marks, strict=True):
        ages = [now - score for _, score in entries]
        found[component] = Liveness(
            alive=sum(1 for age in ages if age <= stale),
            last_seen_seconds=max(0.0, min(ages)) if ages else None,
        )
    return found


@dataclass
class HealthReport:
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failing(self) -> list[str]:
        return [name for name, check in self.checks.items() if not check["ok"]]


def _check(report: HealthReport, name: str, probe: Any) -> bool:
    try:
        probe()
    except Exception as error:
        logger.warning("health: %s is failing: %s", name, error)
        report.checks[name] = {"ok": False, "detail": error.__class__.__name__}
        return False
    report.checks[name] = {"ok": True}
    return True


def stack_health() -> HealthReport:
    """Database, Redis, the broker, a live worker and a ticking beat, each checked on its own."""
    from shop.celery import app

    def database() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    def broker() -> None:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)

    report = HealthReport()
    _check(report, "database", database)
    redis_ok = _check(report, "redis", lambda: get_redis_connection("default").ping())
    _check(report, "broker", broker)
    stale = settings.HEALTH_STALE_SECONDS
    try:
        if not redis_ok:
            raise ConnectionError("Redis is not reachable")
        found = liveness_read()
    except Exception as error:
        for component in COMPONENTS:
            report.checks[component] = {"ok": False, "detail": f"unknown: {error}"}
        return report
    for component, liveness in found.items():
        check = liveness.as_json()
        if not check["ok"]:
            check["detail"] = f"no live {component} marked in the last {stale:g} s"
        report.checks[component] = check
    return report
