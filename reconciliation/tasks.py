from __future__ import annotations

import datetime as dt

from celery import shared_task

from payments.gateways.registry import CHANNELS
from reconciliation.models import StatementRun
from reconciliation.services import china_today, reconcile_day


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=1800, soft_time_limit=1700)
def reconcile_yesterday() -> dict[str, str]:
    """Reconcile yesterday (China time) per channel until it is done; idempotent."""
    day = china_today() - dt.timedelta(days=1)
    results = {}
    for channel in CHANNELS:
        done = StatementRun.objects.filter(
            channel=channel, statement_date=day, status=StatementRun.Status.DONE
        ).exists()
        results[channel] = "done" if done else reconcile_day(channel=channel, day=day).status
    return results
