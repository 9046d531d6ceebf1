from __future__ import annotations

from celery import shared_task

from orders import expiry


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=120, soft_time_limit=100)
def purge_idempotency_keys() -> int:
    return expiry.purge_idempotency_keys()
