"""The Celery app. Beat schedules live in one place: ``shop.schedules``.

Also the worker's share of observability: Django's ``LOGGING`` (JSON lines) instead of
Celery's own logging setup, log context bound from each task's arguments, the request id
carried from the web request that sent a task, sweep metrics, and the multiprocess metrics
bookkeeping of pool processes.

The worker and beat also mark themselves alive for ``/healthz`` (``shop.health``): the worker
from its consumer's event loop, so a wedged loop or a lost broker connection stops the marks;
beat from its scheduler's tick, so a beat that stopped sending tasks stops them too.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery import Celery, bootsteps, signals
from celery.beat import PersistentScheduler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

logger = logging.getLogger(__name__)

app = Celery("oncepay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Beat tasks whose runs are timed and whose returned row counts are added up.
SWEEPS = {
    "payments.tasks.poll_sweep": "poll",
    "payments.tasks.expire_orders_sweep": "expire_orders",
    "refunds.tasks.refund_sweep": "refunds",
    "shop.tasks.outbox_sweep_task": "outbox",
    "reconciliation.tasks.reconcile_yesterday": "reconcile",
    "orders.tasks.purge_idempotency_keys": "purge_idempotency_keys",
}
_started: dict[str, float] = {}


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **kwargs: object) -> None:
    from shop.schedules import beat_schedule

    sender.conf.beat_schedule = beat_schedule()


@signals.task_prerun.connect
def _check_database_connection(**kwargs: object) -> None:
    """What Django does at the start of a request: drop a connection that is broken or past
    ``CONN_MAX_AGE``, so a reused connection is a healthy one."""
    from django.db import close_old_connections

    close_old_connections()


def _mark(component: str, member: str) -> None:
    from shop.health import liveness_mark

    try:
        liveness_mark(component=component, member=member)
    except Exception:
        # Redis is down or slow: the mark goes stale and /healthz says so; keep running.
        logger.warning("could not mark the %s alive", component, exc_info=True)


def _forget(component: str, member: str) -> None:
    from shop.health import liveness_forget

    try:
        liveness_forget(component=component, member=member)
    except Exception:
        logger.warning("could not withdraw the %s's liveness mark", component, exc_info=True)


class WorkerLiveness(bootsteps.StartStopStep):
    """Marks this worker alive every ``HEALTH_HEARTBEAT_SECONDS`` while it consumes tasks."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None
        self.member = ""

    def start(self, parent: Any) -> None:
        from django.conf import settings

        self.member = f"{parent.hostname}:{os.getpid()}"
        _mark("worker", self.member)
        self.tref = parent.timer.call_repeatedly(
            float(settings.HEALTH_HEARTBEAT_SECONDS), _mark, ("worker", self.member)
        )

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            parent.timer.cancel(self.tref)
            self.tref = None
            _forget("worker", self.member)

    shutdown = stop


app.steps["consumer"].add(WorkerLiveness)


class LivenessScheduler(PersistentScheduler):
    """Beat's scheduler (``beat_scheduler``), marking beat alive as it ticks.

    ``beat_max_loop_interval`` (set from ``HEALTH_HEARTBEAT_SECONDS``) keeps the ticks that
    frequent even when nothing is due.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from shop.health import liveness_member

        super().__init__(*args, **kwargs)
        self.liveness_member = liveness_member()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        _mark("beat", self.liveness_member)
        return float(super().tick(*args, **kwargs))

    def close(self) -> None:
        _forget("beat", self.liveness_member)
        super().close()


@signals.setup_logging.connect
def _use_django_logging(**kwargs: Any) -> None:
    """Connected, so Celery leaves the root logger alone: Django's ``LOGGING`` (configured by
    ``django.setup()``) formats the worker's and beat's lines like the web's."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@signals.before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    from shop import logs

    request_id = logs.current()["request_id"]
    if headers is not None and request_id:
        headers["request_id"] = request_id


@signals.task_prerun.connect
def _task_context(
    task_id: str = "", task: Any = None, args: Any = (), kwargs: Any = None, **_: Any
) -> None:
    from shop import logs

    logs.clear()
    request_id = getattr(task.request, "request_id", None) if task is not None else None
    logs.bind(request_id=request_id or f"task-{task_id}")
    name = getattr(task, "name", "")
    if name in SWEEPS:
        _started[task_id] = time.perf_counter()
    try:
        _bind_from_arguments(name, list(args or ()) + list((kwargs or {}).values()))
    except Exception:  # context is a courtesy: never fail a task over it
        logs.logger.debug("no log context for %s", name, exc_info=True)


def _bind_from_arguments(name: str, args: list[Any]) -> None:
    """The order and trade a task works on, from the id it was given."""
    from shop import logs

    if not args or not isinstance(args[0], int):
        return
    if name == "payments.tasks.poll_attempt":
        from payments.models import PaymentAttempt

        attempt = PaymentAttempt.objects.select_related("order").filter(pk=args[0]).first()
        if attempt is not None:
            logs.bind_attempt(attempt)
    elif name == "refunds.tasks.execute_refund":
        from refunds.models import Refund

        refund = Refund.objects.select_related("attempt__order").filter(pk=args[0]).first()
        if refund is not None:
            logs.bind_attempt(refund.attempt)
    elif name == "shop.tasks.deliver_outbox_event":
        from shop.models import OutboxEvent

        payload = OutboxEvent.objects.filter(pk=args[0]).values_list("payload", flat=True).first()
        if isinstance(payload, dict):
            logs.bind(order_id=payload.get("order_id", ""))


@signals.task_postrun.connect
def _task_done(task_id: str = "", task: Any = None, retval: Any = None, **_: Any) -> None:
    from shop import logs, metrics

    started = _started.pop(task_id, None)
    name = getattr(task, "name", "")
    if started is not None and name in SWEEPS:
        rows = (
            retval
            if isinstance(retval, int)
            else sum(v for v in retval.values() if isinstance(v, int))
            if isinstance(retval, dict)
            else 0
        )
        metrics.sweep_ran(sweep=SWEEPS[name], seconds=time.perf_counter() - started, rows=rows)
    logs.clear()


@signals.worker_process_shutdown.connect
def _metrics_process_dead(pid: int | None = None, **kwargs: Any) -> None:
    """Live gauges of an exited pool process stop counting (its counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid or os.getpid())
