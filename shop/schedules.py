"""Every periodic task, in one place. Each is idempotent and safe to run twice at once."""

from typing import Any

from django.conf import settings


def beat_schedule() -> dict[str, dict[str, Any]]:
    every = float(settings.SWEEP_INTERVAL_SECONDS)
    return {
        "expire-orders": {"task": "orders.tasks.expire_orders_sweep", "schedule": every},
    }
