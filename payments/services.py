"""Gateway round trips about existing attempts, and closing unpaid orders.

Every phase that talks to a gateway runs outside any database transaction: call the gateway →
store its answer (``payments.events``) → hand it to ``payments.decision``, which locks, re-reads
and applies it. A process that dies between the phases leaves an attempt row that polling
recovers. Callers hold the order's Redis lock (``orders.locks.order_lock``) where they can.
"""

from __future__ import annotations

import logging

from orders.locks import order_lock
from orders.models import Order
from payments.decision import Decision, attempt_apply_trade_status, order_close_unpaid
from payments.events import event_record_answer
from payments.gateways.base import CloseOutcome, TradeOutcome, TradeStatus
from payments.gateways.registry import get_gateway
from payments.models import LIVE_STATUSES, UNSETTLED_STATUSES, GatewayEvent, PaymentAttempt
from shop.errors import Conflict

logger = logging.getLogger(__name__)


def order_already_paid() -> Conflict:
    return Conflict("order_already_paid", "This order has already been paid.")


def order_closed_error() -> Conflict:
    return Conflict("order_closed", "This order is closed and can no longer be paid.")


def attempt_query_and_apply(
    *, attempt: PaymentAttempt, source: str
) -> tuple[TradeStatus, Decision]:
    """Ask the gateway about a trade (no transaction open) and apply the answer."""
    status = get_gateway(attempt.channel).query(attempt.out_trade_no)
    event_record_answer(attempt, GatewayEvent.Kind.QUERY, status)
    return status, attempt_apply_trade_status(attempt_id=attempt.pk, status=status, source=source)


def attempt_close_at_gateway(*, attempt: PaymentAttempt, source: str) -> CloseOutcome:
    """Close a trade at its gateway first, then record what that means.

    CLOSED → the attempt is closed; PAID → the capture is recorded through the decision service;
    UNKNOWN → nothing changes here (the trade may still be payable).
    """
    result = get_gateway(attempt.channel).close(attempt.out_trade_no)
    event_record_answer(attempt, GatewayEvent.Kind.CLOSE, result)
    if result.outcome is CloseOutcome.CLOSED:
        attempt_apply_trade_status(
            attempt_id=attempt.pk,
            status=TradeStatus(outcome=TradeOutcome.CLOSED, out_trade_no=attempt.out_trade_no),
            source=source,
        )
    elif result.outcome is CloseOutcome.PAID:
        status, _ = attempt_query_and_apply(attempt=attempt, source=source)
        if status.outcome is not TradeOutcome.PAID:
            return CloseOutcome.UNKNOWN  # said paid, query disagrees: try again later
    return result.outcome


def payment_check_now(*, order_id: int) -> Order:
    """Query the gateway for the order's live attempts now (the shopper's "Check now")."""
    with order_lock(order_id):
        for attempt in PaymentAttempt.objects.filter(order_id=order_id, status__in=LIVE_STATUSES):
            attempt_query_and_apply(attempt=attempt, source="check_now")
    return Order.objects.get(pk=order_id)


def order_cancel_or_expire(*, order_id: int, reason: str) -> bool:
    """Close an unpaid order: every unsettled attempt is closed at its gateway first.

    Returns True when the order is closed now. If a gateway says an attempt was paid, the order
    becomes paid (or the payment is refunded); if a gateway cannot be reached, the order stays
    open until the next try rather than closing blind.
    """
    with order_lock(order_id):
        for attempt in PaymentAttempt.objects.filter(
            order_id=order_id, status__in=UNSETTLED_STATUSES
        ):
            if attempt_close_at_gateway(attempt=attempt, source=reason) is CloseOutcome.UNKNOWN:
                return False
        return order_close_unpaid(order_id=order_id, reason=reason)
