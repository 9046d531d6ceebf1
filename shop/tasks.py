from __future__ import annotations

from celery import shared_task

from shop.outbox import outbox_deliver, outbox_deliver_pending, outbox_sweep


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=60, soft_time_limit=50)
def deliver_outbox_event(event_pk: int) -> bool:
    return outbox_deliver(event_pk=event_pk)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=600, soft_time_limit=540)
def outbox_sweep_task() -> int:
    return outbox_sweep()


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=600, soft_time_limit=540)
def outbox_deliver_pending_task() -> int:
    """Sent by ``shop.outbox.outbox_kick`` after a commit that wrote outbox events."""
    return outbox_deliver_pending()
