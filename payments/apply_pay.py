"""Apply-pay: the shopper asks to pay an order with a channel on a client.

At most one live attempt per order (a partial unique index holds it): a live attempt on the
same channel and client is returned unchanged (the same QR); one on another channel or client
is closed at its gateway first. In phases, no gateway call inside a transaction:
lock the order (Redis) → reuse or create the attempt (order row lock, commit) → prepay at the
gateway → record the answer through the decision service.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from orders.locks import lock_order_row, order_lock
from orders.models import Order, OrderStatus
from payments.decision import attempt_apply_prepay, paid_cache_key
from payments.events import event_record_answer
from payments.gateways.base import Client as GatewayClient
from payments.gateways.base import CloseOutcome, PrepayOutcome, PrepayRequest
from payments.gateways.registry import get_gateway
from payments.models import (
    LIVE_STATUSES,
    UNSETTLED_STATUSES,
    AttemptStatus,
    GatewayEvent,
    PaymentAttempt,
)
from payments.services import attempt_close_at_gateway, order_already_paid, order_closed_error
from shop import logs, metrics
from shop.errors import ApplicationError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyPayResult:
    attempt: PaymentAttempt
    created: bool  # False: an existing live attempt was returned as it is


def payment_in_progress() -> ApplicationError:
    return ApplicationError(
        "payment_in_progress",
        "A previous payment for this order is still open at the gateway. Try again shortly.",
        status=503,
    )


def payment_rejected() -> ApplicationError:
    return ApplicationError(
        "payment_rejected", "The payment provider refused this payment. Try another way."
    )


def _check_payable(order: Order) -> None:
    if order.is_paid:
        raise order_already_paid()
    if order.status == OrderStatus.CLOSED or order.expires_at <= timezone.now():
        raise order_closed_error()


def payment_apply(*, order_id: int, channel: str, client: str) -> ApplyPayResult:
    """The shopper asks to pay ``order_id`` with ``channel`` on ``client``.

    If the close of a previous live attempt cannot be confirmed, nothing new is created (503).
    Counted by outcome: new, reused, switched (another attempt closed first), refused (code).
    """
    try:
        result, switched = _payment_apply(order_id=order_id, channel=channel, client=client)
    except ApplicationError as error:
        metrics.apply_pay_result(channel=channel, outcome="refused", code=error.code)
        raise
    outcome = "switched" if switched else "new" if result.created else "reused"
    metrics.apply_pay_result(channel=channel, outcome=outcome)
    logger.info("apply-pay %s: %s/%s attempt %s", outcome, channel, client, result.attempt)
    return result


def _payment_apply(*, order_id: int, channel: str, client: str) -> tuple[ApplyPayResult, bool]:
    order = Order.objects.get(pk=order_id)
    logs.bind(order_id=order.public_id)
    switched = False
    if order.status == OrderStatus.UNPAID and _paid_cache_says_paid(order):
        raise order_already_paid()
    with order_lock(order_id):
        for _ in range(3):
            attempt, to_close = _attempt_reuse_or_create(order_id, channel, client)
            if attempt is not None and attempt.action:
                logs.bind(out_trade_no=attempt.out_trade_no)
                return ApplyPayResult(attempt=attempt, created=False), switched
            if to_close is not None:
                switched = True
                outcome = attempt_close_at_gateway(attempt=to_close, source="apply_pay")
                if outcome is CloseOutcome.UNKNOWN:
                    raise payment_in_progress()
                order.refresh_from_db()
                _check_payable(order)
                continue
            assert attempt is not None
            logs.bind(out_trade_no=attempt.out_trade_no)
            return ApplyPayResult(attempt=_attempt_prepay(attempt), created=True), switched
    raise payment_in_progress()


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
        order = lock_order_row(order_id)
        _check_payable(order)
        live = (
            PaymentAttempt.objects.select_for_update(of=("self",))
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


def gateway_subject(order: Order) -> str:
    """What the shopper sees at the gateway: the shop and what was bought (Alipay allows 256
    characters, WeChat Pay 127 bytes; kept well inside both)."""
    names = list(order.lines.order_by("id").values_list("name", flat=True)[:3])
    what = ", ".join(names) or order.public_id
    subject = f"{settings.SHOP_NAME}: {what}"
    while len(subject.encode()) > 120:
        subject = subject[:-2] + "…"
    return subject


def _attempt_prepay(attempt: PaymentAttempt) -> PaymentAttempt:
    """Phase 2 and 3: open the trade at the gateway (no transaction), then record the answer.

    Every answer is recorded before anything is raised: a rejected prepay leaves the attempt
    ``failed`` (committed), so polling never asks about a trade that does not exist.
    """
    order = attempt.order
    request = PrepayRequest(
        out_trade_no=attempt.out_trade_no,
        amount=attempt.amount,
        currency=attempt.currency,
        description=gateway_subject(order),
        client=GatewayClient(attempt.client),
        expires_at=order.expires_at,
        notify_url=f"{settings.SHOP_BASE_URL}/payments/notify/{attempt.channel}/",
        return_url=f"{settings.SHOP_BASE_URL}/payments/return/{attempt.channel}/",
    )
    from payments.tasks import schedule_first_poll

    schedule_first_poll(attempt.pk)
    result = get_gateway(attempt.channel).prepay(request)
    event_record_answer(attempt, GatewayEvent.Kind.PREPAY, result)
    if result.outcome is PrepayOutcome.CREATED:
        assert result.action is not None
        recorded, _ = attempt_apply_prepay(
            attempt_id=attempt.pk, opened=result.action, gateway_trade_no=result.gateway_trade_no
        )
    elif result.outcome is PrepayOutcome.REJECTED:
        attempt_apply_prepay(
            attempt_id=attempt.pk, opened=None, rejected_error=result.error or "rejected"
        )
        raise payment_rejected()
    else:
        # The trade may exist: the attempt stays live and polling finds out.
        attempt_apply_prepay(attempt_id=attempt.pk, opened=None)
        raise payment_in_progress()
    if recorded.status != AttemptStatus.PAYING or not recorded.action:
        # Someone closed this attempt while we were at the gateway (our lock expired or is
        # off): the trade we just opened must not stay payable.
        attempt_close_at_gateway(attempt=recorded, source="apply_pay_superseded")
        recorded.refresh_from_db()
        if recorded.status == AttemptStatus.SUCCEEDED:
            raise order_already_paid()
        raise payment_in_progress()
    return recorded
