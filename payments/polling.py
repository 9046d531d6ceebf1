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
from django.db import connection
from django.utils import timezone

from orders.locks import OrderBusy, order_lock
from orders.models import OrderStatus
from payments.decision import attempt_after_poll
from payments.models import UNSETTLED_STATUSES, WATCHED_STATUSES, PaymentAttempt
from payments.services import attempt_close_at_gateway, attempt_query_and_apply
from shop import logs, metrics

logger = logging.getLogger(__name__)

# Attempts claimed per transaction; small, so a dead claimer holds little.
CLAIM_BATCH = 10


def _query_bound() -> float:
    """The longest one gateway query can take (connect + read timeouts), plus slack."""
    return float(settings.GATEWAY_CONNECT_TIMEOUT + settings.GATEWAY_READ_TIMEOUT + 1)


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


# Claim and lease a batch in one statement: lock due rows (skipping those someone else holds),
# push each one's next_poll_at forward by its position in the batch, and return them in order.
_CLAIM_DUE = """
WITH due AS (
    SELECT id, next_poll_at FROM payments_paymentattempt
    WHERE status = ANY(%(statuses)s) AND next_poll_at IS NOT NULL AND next_poll_at <= %(now)s
    ORDER BY next_poll_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), ranked AS (
    SELECT id, row_number() OVER (ORDER BY next_poll_at, id) AS position FROM due
)
UPDATE payments_paymentattempt AS attempt
SET next_poll_at = %(now)s + ranked.position * make_interval(secs => %(bound)s)
FROM ranked
WHERE attempt.id = ranked.id
RETURNING attempt.id, ranked.position
"""


def _claim_due(batch: int) -> list[int]:
    """Lease due attempts: only ``next_poll_at`` moves (bookkeeping, not state); attempt rows
    alone are locked, skipping those someone else holds, so this takes no order lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_DUE,
            {
                "statuses": [str(s) for s in WATCHED_STATUSES],
                "now": timezone.now(),
                "batch": batch,
                "bound": _query_bound(),
            },
        )
        rows = cursor.fetchall()
    return [attempt_id for attempt_id, _ in sorted(rows, key=lambda row: row[1])]


def attempt_poll(*, attempt_id: int, only_if_due: bool) -> str:
    """Query one attempt, apply the answer, and set its next poll time from the schedule —
    all under the order's Redis lock, the row locks taken by the decision service in order."""
    attempt = PaymentAttempt.objects.select_related("order").filter(pk=attempt_id).first()
    if attempt is None or attempt.status not in WATCHED_STATUSES or attempt.next_poll_at is None:
        return "settled"
    logs.bind(order_id=attempt.order.public_id, out_trade_no=attempt.out_trade_no)
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
            metrics.poll_result(channel=attempt.channel, answer=status.outcome, decision=decision)
            attempt.refresh_from_db()
            attempt.order.refresh_from_db()
            if attempt.status in UNSETTLED_STATUSES and attempt.order.status != OrderStatus.UNPAID:
                # The order was paid (or closed) through another attempt while this one stayed
                # open: close it at the gateway so it cannot take a second payment.
                attempt_close_at_gateway(attempt=attempt, source="poll_leftover")
            attempt_after_poll(attempt_id=attempt_id, outcome=status.outcome)
    except OrderBusy:
        return "busy"  # someone else holds the order; the lease brings us back soon
    return str(decision)
