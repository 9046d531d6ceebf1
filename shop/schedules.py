"""Every periodic task, in one place. Each is idempotent and safe to run twice at once."""

from typing import Any

from celery.schedules import crontab
from django.conf import settings


def beat_schedule() -> dict[str, dict[str, Any]]:
    every = float(settings.SWEEP_INTERVAL_SECONDS)
    # Each run must finish within its period or the next one overlaps; expiring keeps that so.
    options = {"expires": every}
    return {
        "poll-live-attempts": {
            "task": "payments.tasks.poll_sweep",
            "schedule": every,
            "options": options,
        },
        "expire-orders": {
            "task": "payments.tasks.expire_orders_sweep",
            "schedule": every,
            "options": options,
        },
        "refunds": {"task": "refunds.tasks.refund_sweep", "schedule": every, "options": options},
        "outbox": {"task": "shop.tasks.outbox_sweep_task", "schedule": every, "options": options},
        "reconcile-yesterday": {
            "task": "reconciliation.tasks.reconcile_yesterday",
            # China time has no daylight saving: the hour there is a fixed UTC hour.
            "schedule": crontab(minute=0, hour=(settings.RECONCILE_HOUR - 8) % 24),
        },
        "purge-unverified-events": {
            "task": "payments.tasks.purge_unverified_events",
            "schedule": 3600.0,
        },
        "purge-idempotency-keys": {
            "task": "orders.tasks.purge_idempotency_keys",
            "schedule": 3600.0,
        },
    }
