"""Active polling: find out what the gateway knows when callbacks are lost or late.

Due attempts are claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` and leased by pushing their
``next_poll_at`` forward in the claiming transaction, so several workers (or two beat
schedulers) share the sweep without querying one trade twice at the same time. Leases are
staggered by position in the batch — about when each would be reached — so the claims of a
worker killed mid-batch come due again soon, not after one long fixed lease.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orders.models import OrderStatus
from payments.gateways.base import TradeOutcome
from payments.locks import OrderBusy, order_lock
from payments.models import (
    LIVE_STATUSES,
    UNSETTLED_STATUSES,
    WATCHED_STATUSES,
    AttemptStatus,
    PaymentAttempt,
)
from payments.services import (
    _transition,
    attempt_close_at_gateway,
    attempt_query_and_apply,
    closed_watch_next_poll,
)

logger = logging.getLogger(__name__)

# Attempts claimed per transaction; small, so a dead claimer holds little.
CLAIM_BATCH = 10


def _query_bound() -> float:
    """The longest one gateway query can take (connect + read timeouts), plus slack."""
    return float(settings.GATEWAY_CONNECT_TIMEOUT + settings.GATEWAY_READ_TIMEOUT + 1)


def next_poll_time(attempt: PaymentAttempt, step: int, now: dt.datetime) -> dt.datetime:
    schedule = settings.PAYMENT_POLL_SCHEDULE
    if step < len(schedule):
        return max(attempt.created_at + dt.timedelta(seconds=schedule[step]), now)
    return now + dt.timedelta(seconds=schedule[-1])


def poll_sweep(*, limit: int | None = None) -> int:
    """Claim due unsettled attempts in batches and poll each. Returns how many were polled."""
    polled = 0
    budget = limit or settings.SWEEP_BATCH_SIZE
    while polled < budget:
        ids = _claim_due(min(CLAIM_BATCH, budget - polled))
        for attempt_id in ids:
            attempt_poll(attempt_id=attempt_id, only_if_due=False)
        polled += len(ids)
        if not ids:
            break
    return polled


def _claim_due(batch: int) -> list[int]:
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            PaymentAttempt.objects.select_for_update(skip_locked=True)
            .filter(status__in=WATCHED_STATUSES, next_poll_at__lte=now)
            .order_by("next_poll_at")
            .values_list("pk", flat=True)[:batch]
        )
        for position, attempt_id in enumerate(ids, start=1):
            PaymentAttempt.objects.filter(pk=attempt_id).update(
                next_poll_at=now + dt.timedelta(seconds=_query_bound() * position)
            )
    return ids


def attempt_poll(*, attempt_id: int, only_if_due: bool) -> str:
    """Query one attempt, apply the answer, and set its next poll time from the schedule."""
    attempt = PaymentAttempt.objects.select_related("order").filter(pk=attempt_id).first()
    if attempt is None or attempt.status not in WATCHED_STATUSES or attempt.next_poll_at is None:
        return "settled"
    now = timezone.now()
    if (
        only_if_due
        and attempt.next_poll_at
        and attempt.next_poll_at > now + dt.timedelta(seconds=1)
    ):
        return "not_due"
    try:
        with order_lock(attempt.order_id, wait=1.0):
            status, decision = attempt_query_and_apply(attempt=attempt, source="poll")
            attempt.refresh_from_db()
            if attempt.status in UNSETTLED_STATUSES and attempt.order.status != OrderStatus.UNPAID:
                # The order was paid (or closed) through another attempt while this one stayed
                # open: close it at the gateway so it cannot take a second payment.
                attempt_close_at_gateway(attempt=attempt, source="poll_leftover")
    except OrderBusy:
        return "busy"  # someone else holds the order; the lease brings us back soon
    _reschedule(attempt_id, status.outcome)
    return str(decision)


def _reschedule(attempt_id: int, outcome: TradeOutcome) -> None:
    now = timezone.now()
    with transaction.atomic():
        attempt = (
            PaymentAttempt.objects.select_for_update().select_related("order").get(pk=attempt_id)
        )
        if attempt.status == AttemptStatus.CLOSED and attempt.next_poll_at is not None:
            next_poll = closed_watch_next_poll(attempt.order, now)
            if next_poll is None and outcome is TradeOutcome.UNKNOWN:
                # The watch may only end on an answer: a capture made inside the window must be
                # found even if the gateway was silent when the window closed.
                next_poll = now + dt.timedelta(seconds=settings.PAYMENT_POLL_SCHEDULE[-1])
            _transition(
                attempt,
                poll_step=attempt.poll_step + 1,
                last_polled_at=now,
                next_poll_at=next_poll,
            )
            return
        if attempt.status not in UNSETTLED_STATUSES:
            return
        step = attempt.poll_step + 1
        changes: dict[str, object] = {
            "poll_step": step,
            "last_polled_at": now,
            "next_poll_at": next_poll_time(attempt, step, now),
        }
        exhausted = step >= len(settings.PAYMENT_POLL_SCHEDULE)
        if exhausted and attempt.status in LIVE_STATUSES:
            # The schedule is over and the trade is still not settled: ops should look. It stays
            # polled at the last interval (it heals by itself when the gateway answers) and is
            # closed at the gateway before any new attempt or the order's close.
            changes["status"] = AttemptStatus.NEEDS_ATTENTION
            changes["last_error"] = (
                "gateway silent through the whole poll schedule"
                if outcome is TradeOutcome.UNKNOWN
                else f"still {outcome} after the whole poll schedule"
            )
            logger.error(
                "attempt %s needs attention: %s", attempt.out_trade_no, changes["last_error"]
            )
        _transition(attempt, **changes)
