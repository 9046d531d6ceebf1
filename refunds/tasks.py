"""Thin refund tasks. Unknown outcomes are retried with backoff under the same out_refund_no."""

from __future__ import annotations

from celery import shared_task

from refunds import sweeps
from refunds.services import refund_execute


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=8,
    time_limit=120,
    soft_time_limit=100,
)
def execute_refund(self, refund_id: int) -> str:  # type: ignore[no-untyped-def]
    outcome = refund_execute(refund_id=refund_id)
    if outcome in ("unknown", "pending"):
        # Backoff 5 s, 10 s, 20 s … capped at 5 minutes (inside the broker visibility timeout);
        # the pending-refund sweep covers us if retries run out.
        raise self.retry(countdown=min(5 * 2**self.request.retries, 300))
    return outcome


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=600, soft_time_limit=540)
def refund_sweep() -> dict[str, int]:
    return sweeps.refund_sweep()
