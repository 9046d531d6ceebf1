"""Thin tasks: primitive arguments, re-read from the database, one idempotent service each."""

from __future__ import annotations

import datetime as dt

from celery import shared_task
from django.conf import settings

from payments.gateways.registry import CHANNELS
from reconciliation.models import StatementRun
from reconciliation.services import china_today, reconcile_day


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=3600,
    soft_time_limit=3500,
    max_retries=None,  # bounded below by RECONCILE_MAX_RETRIES, read at run time
)
def reconcile_run(self: object, channel: str, day: str) -> str:
    """Reconcile one channel and day; a statement not published yet is asked for again later."""
    run = reconcile_day(channel=channel, day=dt.date.fromisoformat(day))
    retries = int(getattr(self, "request").retries or 0)  # noqa: B009 - celery's bound task
    if run.status == StatementRun.Status.NOT_READY and retries < settings.RECONCILE_MAX_RETRIES:
        raise self.retry(countdown=settings.RECONCILE_RETRY_SECONDS)  # type: ignore[attr-defined]
    return str(run.status)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=60)
def reconcile_yesterday() -> dict[str, str]:
    """Daily, once the gateways have published (``RECONCILE_HOUR``, China time): queue a run per
    channel for yesterday unless it is already done. Idempotent."""
    day = china_today() - dt.timedelta(days=1)
    results = {}
    for channel in CHANNELS:
        done = StatementRun.objects.filter(
            channel=channel, statement_date=day, status=StatementRun.Status.DONE
        ).exists()
        if not done:
            reconcile_run.delay(channel, day.isoformat())
        results[channel] = "done" if done else "queued"
    return results
