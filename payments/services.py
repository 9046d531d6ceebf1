"""Payment writes. ``attempt_apply_trade_status`` is the one place that decides payment state.

Every phase that talks to a gateway runs outside any database transaction:
lock → re-read → record (commit) → call the gateway → lock → re-read → apply idempotently.
A process that dies between the phases leaves an attempt row that polling recovers.
Lock order: order → payment attempt → refund.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from orders.models import CloseReason, Order, OrderStatus
from orders.services import (
    order_close_locked,
    order_close_unpaid,
    order_reserve_stock,
    outbox_enqueue,
)
from payments.gateways.base import Client as GatewayClient
from payments.gateways.base import (
    CloseOutcome,
    CloseResult,
    PrepayOutcome,
    PrepayRequest,
    PrepayResult,
    TradeOutcome,
    TradeStatus,
)
from payments.gateways.registry import get_gateway
from payments.locks import order_lock
from payments.models import (
    LIVE_STATUSES,
    UNSETTLED_STATUSES,
    AttemptStatus,
    GatewayEvent,
    PaymentAttempt,
)
from payments.realtime import publish_order_update
from refunds.models import RefundReason
from refunds.services import refund_create_automatic
from shop.errors import ApplicationError, Conflict

logger = logging.getLogger(__name__)


class Decision(StrEnum):
    PAID = "paid"  # this result made the order paid
    DUPLICATE = "duplicate"  # a second capture: refund recorded
    LATE = "late"  # a capture after the order closed: refund recorded
    REVIVED = "revived"  # a capture after expiry, within grace, stock re-reserved: order paid
    UPDATED = "updated"  # the attempt moved (paying, closed)
    UNCHANGED = "unchanged"  # nothing new (repeat delivery, unknown outcome, stale result)
    MISMATCH = "mismatch"  # the gateway reports another amount: attempt set aside for ops


def paid_cache_key(order_public_id: str) -> str:
    return f"paid:{order_public_id}"


def order_already_paid() -> Conflict:
    return Conflict("order_already_paid", "This order has already been paid.")


def order_closed_error() -> Conflict:
    return Conflict("order_closed", "This order is closed and can no longer be paid.")


# --- events ------------------------------------------------------------------------------------


def event_record(
    *,
    channel: str,
    kind: str,
    out_trade_no: str = "",
    attempt: PaymentAttempt | None = None,
    outcome: str = "",
    verified: bool = True,
    rejection: str = "",
    headers: dict[str, Any] | None = None,
    body: str = "",
    payload: str = "",
    event_id: str | None = None,
) -> GatewayEvent:
    """Store what a gateway said, committed on its own before anything acts on it."""
    body, payload = _storable(body), _storable(payload)
    event = GatewayEvent(
        channel=channel,
        kind=kind,
        out_trade_no=out_trade_no[:64],
        attempt=attempt,
        outcome=outcome,
        verified=verified,
        rejection=rejection[:200],
        headers=headers or {},
        body=body,
        payload=payload,
        event_id=event_id,
    )
    if event_id is None:
        event.save()
        return event
    return _event_upsert(event)


# One round trip for the hot path of duplicate storms: insert the first copy of a notification,
# or count a re-delivery of it and keep the first copy; either way return its id and whether it
# was already applied.
_EVENT_UPSERT = """
INSERT INTO payments_gatewayevent
    (channel, kind, event_id, out_trade_no, attempt_id, outcome, verified, rejection, headers,
     body, payload, deliveries, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s)
ON CONFLICT (channel, event_id) WHERE event_id IS NOT NULL
DO UPDATE SET deliveries = payments_gatewayevent.deliveries + 1
RETURNING id, processed_at, deliveries
"""


def _event_upsert(event: GatewayEvent) -> GatewayEvent:
    event.created_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _EVENT_UPSERT,
            [
                event.channel,
                event.kind,
                event.event_id,
                event.out_trade_no,
                event.attempt_id,
                event.outcome,
                event.verified,
                event.rejection,
                json.dumps(event.headers),
                event.body,
                event.payload,
                event.created_at,
            ],
        )
        event.pk, event.processed_at, event.deliveries = cursor.fetchone()
    event._state.adding = False
    return event


def _storable(text: str) -> str:
    # PostgreSQL text cannot hold NUL; a hostile body must still be stored, not crash us.
    return text.replace("\x00", "\ufffd")


# --- the one state-deciding service -----------------------------------------------------------


def _transition(attempt: PaymentAttempt, **changes: Any) -> bool:
    """Conditionally update ``attempt`` (caller holds its row lock): the version is the fence."""
    changes.setdefault("updated_at", timezone.now())
    updated = PaymentAttempt.objects.filter(pk=attempt.pk, version=attempt.version).update(
        version=F("version") + 1, **changes
    )
    if updated:
        for name, value in changes.items():
            setattr(attempt, name, value)
        attempt.version += 1
    return bool(updated)


def attempt_apply_trade_status(*, attempt_id: int, status: TradeStatus, source: str) -> Decision:
    """Apply what a gateway said about a trade. Idempotent; state only moves forward.

    Callbacks, polls, closes, apply-pay and reconciliation all come here. The caller should hold
    the order lock (``payments.locks.order_lock``); correctness does not depend on it.
    """
    refunds_to_run: list[int] = []
    with transaction.atomic(durable=True):
        order_id = PaymentAttempt.objects.values_list("order_id", flat=True).get(pk=attempt_id)
        order = Order.objects.select_for_update().get(pk=order_id)
        attempt = PaymentAttempt.objects.select_for_update().get(pk=attempt_id)
        decision = _decide(order, attempt, status, source, refunds_to_run)
    if decision in {Decision.PAID, Decision.REVIVED}:
        cache_paid_result(order)
    if decision is not Decision.UNCHANGED:
        publish_order_update(order.public_id)
    _run_refunds(refunds_to_run)
    if decision is not Decision.UNCHANGED:
        logger.info(
            "attempt %s %s -> %s via %s (order %s %s)",
            attempt.out_trade_no,
            status.outcome,
            decision,
            source,
            order.public_id,
            order.status,
        )
    return decision


def _decide(
    order: Order,
    attempt: PaymentAttempt,
    status: TradeStatus,
    source: str,
    refunds_to_run: list[int],
) -> Decision:
    now = timezone.now()
    outcome = status.outcome
    if outcome is TradeOutcome.PAID:
        if attempt.status == AttemptStatus.SUCCEEDED:
            return Decision.UNCHANGED  # the Nth delivery of the same result
        if status.amount is not None and status.amount != attempt.amount:
            logger.error(
                "amount mismatch on %s: gateway %s, ours %s",
                attempt.out_trade_no,
                status.amount,
                attempt.amount,
            )
            if attempt.status != AttemptStatus.NEEDS_ATTENTION:
                _transition(
                    attempt,
                    status=AttemptStatus.NEEDS_ATTENTION,
                    last_error=f"gateway reports amount {status.amount}",
                    next_poll_at=None,
                )
            return Decision.MISMATCH
        paid_at = status.paid_at or now
        _transition(
            attempt,
            status=AttemptStatus.SUCCEEDED,
            paid_at=paid_at,
            captured_amount=attempt.amount,
            gateway_trade_no=status.gateway_trade_no or attempt.gateway_trade_no,
            next_poll_at=None,
            last_error="",
        )
        return _settle_capture(order, attempt, paid_at, refunds_to_run)

    if attempt.status not in LIVE_STATUSES and attempt.status != AttemptStatus.NEEDS_ATTENTION:
        return Decision.UNCHANGED  # succeeded/failed/closed never move back
    if outcome is TradeOutcome.NOT_PAID and attempt.status == AttemptStatus.CREATED:
        _transition(attempt, status=AttemptStatus.PAYING)
        return Decision.UPDATED
    if outcome is TradeOutcome.CLOSED or (outcome is TradeOutcome.NOT_FOUND and source == "close"):
        _transition(
            attempt,
            status=AttemptStatus.CLOSED,
            closed_at=now,
            next_poll_at=closed_watch_next_poll(order, now),
        )
        return Decision.UPDATED
    return Decision.UNCHANGED


def closed_watch_next_poll(order: Order, now: dt.datetime) -> dt.datetime | None:
    """When to look at a closed trade again, or None once no gateway could still take payment."""
    watch_until = order.expires_at + dt.timedelta(seconds=settings.LATE_PAYMENT_GRACE_SECONDS)
    if now >= watch_until:
        return None
    return min(now + dt.timedelta(seconds=settings.PAYMENT_POLL_SCHEDULE[-1]), watch_until)


def _settle_capture(
    order: Order, attempt: PaymentAttempt, paid_at: dt.datetime, refunds_to_run: list[int]
) -> Decision:
    """Decide what a newly known capture means for its order. Caller holds both row locks."""
    grace = dt.timedelta(seconds=settings.LATE_PAYMENT_GRACE_SECONDS)
    in_grace = paid_at <= order.expires_at + grace
    if order.status == OrderStatus.UNPAID:
        if in_grace:
            _order_mark_paid(order, attempt, paid_at)
            return Decision.PAID
        # Paid long after the deadline (the gateway ignored time_expire): close and refund.
        order_close_locked(order=order, reason=CloseReason.EXPIRED)
        refunds_to_run.append(
            refund_create_automatic(attempt=attempt, reason=RefundReason.ORDER_CLOSED)
        )
        return Decision.LATE
    if order.is_paid:
        if order.paid_attempt_id == attempt.pk:
            return Decision.UNCHANGED
        refunds_to_run.append(
            refund_create_automatic(attempt=attempt, reason=RefundReason.DUPLICATE_PAYMENT)
        )
        return Decision.DUPLICATE
    # Closed: revive an expired order within grace when its stock can be taken again.
    if order.close_reason == CloseReason.EXPIRED and in_grace and order_reserve_stock(order=order):
        _order_mark_paid(order, attempt, paid_at)
        return Decision.REVIVED
    refunds_to_run.append(
        refund_create_automatic(attempt=attempt, reason=RefundReason.ORDER_CLOSED)
    )
    return Decision.LATE


def _order_mark_paid(order: Order, attempt: PaymentAttempt, paid_at: dt.datetime) -> None:
    now = timezone.now()
    Order.objects.filter(pk=order.pk).update(
        status=OrderStatus.PAID, paid_at=paid_at, paid_attempt=attempt, updated_at=now
    )
    order.status, order.paid_at, order.paid_attempt = OrderStatus.PAID, paid_at, attempt
    outbox_enqueue(
        topic="order.paid",
        payload={
            "order_id": order.public_id,
            "amount": attempt.amount,
            "currency": attempt.currency,
            "channel": attempt.channel,
            "out_trade_no": attempt.out_trade_no,
            "paid_at": paid_at.isoformat(),
        },
    )


def cache_paid_result(order: Order) -> None:
    """Warm the paid-result cache. Called only after the commit that made the order paid."""
    try:
        cache.set(paid_cache_key(order.public_id), "paid", settings.PAID_CACHE_TTL_SECONDS)
    except Exception:
        logger.warning("paid cache unavailable", exc_info=True)


def _run_refunds(refund_ids: list[int]) -> None:
    from refunds.services import refund_dispatch

    for refund_id in refund_ids:
        if refund_id:
            refund_dispatch(refund_id)


# --- gateway round trips -----------------------------------------------------------------------


def _record_answer(
    attempt: PaymentAttempt, kind: str, answer: TradeStatus | CloseResult | PrepayResult
) -> None:
    """Keep what the gateway answered about this attempt, whatever it was."""
    event_record(
        channel=attempt.channel,
        kind=kind,
        out_trade_no=attempt.out_trade_no,
        attempt=attempt,
        outcome=answer.outcome,
        body=answer.raw[:20000],
        rejection=answer.error,
    )


def attempt_query_and_apply(
    *, attempt: PaymentAttempt, source: str
) -> tuple[TradeStatus, Decision]:
    """Ask the gateway about a trade (no transaction open) and apply the answer."""
    status = get_gateway(attempt.channel).query(attempt.out_trade_no)
    _record_answer(attempt, GatewayEvent.Kind.QUERY, status)
    return status, attempt_apply_trade_status(attempt_id=attempt.pk, status=status, source=source)


def attempt_close_at_gateway(*, attempt: PaymentAttempt, source: str) -> CloseOutcome:
    """Close a live trade at its gateway first, then record what that means.

    CLOSED → the attempt is closed; PAID → the capture is recorded through the decision service;
    UNKNOWN → nothing changes here (the trade may still be payable).
    """
    result = get_gateway(attempt.channel).close(attempt.out_trade_no)
    _record_answer(attempt, GatewayEvent.Kind.CLOSE, result)
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


# --- apply-pay ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyPayResult:
    attempt: PaymentAttempt
    created: bool  # False: an existing live attempt was returned as it is


def _check_payable(order: Order) -> None:
    if order.is_paid:
        raise order_already_paid()
    if order.status == OrderStatus.CLOSED or order.expires_at <= timezone.now():
        raise order_closed_error()


def payment_apply(*, order_id: int, channel: str, client: str) -> ApplyPayResult:
    """The shopper asks to pay ``order_id`` with ``channel`` on ``client``.

    At most one live attempt per order: a live attempt on the same channel and client is
    returned unchanged (the same QR); one on another channel or client is closed at its gateway
    first. If that close cannot be confirmed, nothing new is created (503).
    """
    order = Order.objects.get(pk=order_id)
    if order.status == OrderStatus.UNPAID and _paid_cache_says_paid(order):
        raise order_already_paid()
    with order_lock(order_id):
        for _ in range(3):
            attempt, to_close = _attempt_reuse_or_create(order_id, channel, client)
            if attempt is not None and attempt.action:
                return ApplyPayResult(attempt=attempt, created=False)
            if to_close is not None:
                outcome = attempt_close_at_gateway(attempt=to_close, source="apply_pay")
                if outcome is CloseOutcome.UNKNOWN:
                    raise _payment_in_progress()
                order.refresh_from_db()
                _check_payable(order)
                continue
            assert attempt is not None
            return ApplyPayResult(attempt=_attempt_prepay(attempt), created=True)
    raise _payment_in_progress()


def _payment_in_progress() -> ApplicationError:
    return ApplicationError(
        "payment_in_progress",
        "A previous payment for this order is still open at the gateway. Try again shortly.",
        status=503,
    )


def _paid_cache_says_paid(order: Order) -> bool:
    try:
        return cache.get(paid_cache_key(order.public_id)) == "paid"
    except Exception:
        return False


def _attempt_reuse_or_create(
    order_id: int, channel: str, client: str
) -> tuple[PaymentAttempt | None, PaymentAttempt | None]:
    """Phase 1, under the order row lock: reuse, mark for closing, or create the attempt."""
    with transaction.atomic(durable=True):
        order = Order.objects.select_for_update().get(pk=order_id)
        _check_payable(order)
        live = (
            PaymentAttempt.objects.select_for_update()
            .filter(order=order, status__in=UNSETTLED_STATUSES)
            .first()
        )
        if live is not None:
            if (
                live.status in LIVE_STATUSES
                and live.channel == channel
                and live.client == client
                and live.action
            ):
                return live, None
            return None, live
        attempt = PaymentAttempt.objects.create(
            order=order,
            channel=channel,
            client=client,
            amount=order.total_amount,
            currency=order.currency,
            next_poll_at=timezone.now() + dt.timedelta(seconds=settings.PAYMENT_POLL_SCHEDULE[0]),
        )
    return attempt, None


def _attempt_prepay(attempt: PaymentAttempt) -> PaymentAttempt:
    """Phase 2 and 3: open the trade at the gateway (no transaction), then record the answer."""
    order = attempt.order
    request = PrepayRequest(
        out_trade_no=attempt.out_trade_no,
        amount=attempt.amount,
        currency=attempt.currency,
        description=f"Order {order.public_id}",
        client=GatewayClient(attempt.client),
        expires_at=order.expires_at,
        notify_url=f"{settings.SHOP_BASE_URL}/payments/notify/{attempt.channel}/",
        return_url=f"{settings.SHOP_BASE_URL}/payments/return/{attempt.channel}/",
    )
    from payments.tasks import schedule_first_poll

    schedule_first_poll(attempt.pk)
    result = get_gateway(attempt.channel).prepay(request)
    _record_answer(attempt, GatewayEvent.Kind.PREPAY, result)
    if result.outcome is PrepayOutcome.UNKNOWN:
        # The trade may exist: the attempt stays live and polling finds out.
        raise _payment_in_progress()
    with transaction.atomic(durable=True):
        locked = PaymentAttempt.objects.select_for_update().get(pk=attempt.pk)
        if result.outcome is PrepayOutcome.REJECTED:
            if locked.status == AttemptStatus.CREATED:
                _transition(
                    locked,
                    status=AttemptStatus.FAILED,
                    last_error=result.error[:500],
                    next_poll_at=None,
                )
            raise ApplicationError(
                "payment_rejected", "The payment provider refused this payment. Try another way."
            )
        assert result.action is not None
        recorded = locked.status in LIVE_STATUSES and _transition(
            locked,
            status=AttemptStatus.PAYING,
            action=result.action.as_dict(),
            gateway_trade_no=result.gateway_trade_no or locked.gateway_trade_no,
        )
    if not recorded:
        # Someone closed this attempt while we were at the gateway (our lock expired or is
        # off): the trade we just opened must not stay payable.
        attempt_close_at_gateway(attempt=locked, source="apply_pay_superseded")
        locked.refresh_from_db()
        if locked.status == AttemptStatus.SUCCEEDED:
            raise order_already_paid()
        raise _payment_in_progress()
    return locked


def payment_check_now(*, order_id: int) -> Order:
    """Query the gateway for the order's live attempts now (the shopper's "Check now")."""
    with order_lock(order_id):
        for attempt in PaymentAttempt.objects.filter(order_id=order_id, status__in=LIVE_STATUSES):
            attempt_query_and_apply(attempt=attempt, source="check_now")
    return Order.objects.get(pk=order_id)


def order_cancel_or_expire(*, order_id: int, reason: str) -> bool:
    """Close an unpaid order: every live attempt is closed at its gateway first.

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
        closed = order_close_unpaid(order_id=order_id, reason=reason)
    if closed:
        publish_order_update(Order.objects.values_list("public_id", flat=True).get(pk=order_id))
    return closed
