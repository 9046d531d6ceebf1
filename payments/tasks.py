"""Thin tasks: ids in, one idempotent service call, nothing else."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from payments import expiry, polling


def schedule_first_poll(attempt_id: int) -> None:
    """The delayed query after apply-pay. The sweep is the backstop if this is lost."""
    if not settings.TASK_FOLLOW_UPS_ENABLED:
        return
    try:
        poll_attempt.apply_async((attempt_id,), countdown=settings.PAYMENT_POLL_SCHEDULE[0])
    except Exception:
        polling.logger.warning("first poll of %s left to the sweep", attempt_id, exc_info=True)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=120, soft_time_limit=100)
def poll_attempt(attempt_id: int) -> str:
    return polling.attempt_poll(attempt_id=attempt_id, only_if_due=True)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=600, soft_time_limit=540)
def poll_sweep() -> int:
    return polling.poll_sweep()


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=600, soft_time_limit=540)
def expire_orders_sweep() -> int:
    return expiry.expire_orders_sweep()


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=600, soft_time_limit=540)
def purge_unverified_events() -> int:
    from payments.retention import unverified_events_purge

    return unverified_events_purge()
