"""Apply-pay: the shopper asks to pay an order with a channel on a client.

At most one live attempt per order (a partial unique index holds it): a live attempt on the
same channel and client is returned unchanged (the same QR); one on another channel or client
is closed at its gateway first. In phases, no gateway call inside a transaction:
lock the order (Redis) → reuse or create the attempt (order row lock, commit) → prepay at the
gateway → record the answer through the decision service.

A hot order — clicks on several channels, tabs or devices at once — is coalesced: only the
latest choice opens a trade. Each request marks itself in Redis as the order's latest choice
before it waits for the lock (``ChoiceMark``); a request that would open a trade (create one, or
close the live one to switch) steps aside when a newer request for another channel or client
has marked itself since, because that one will close whatever this one opened. It steps aside
as soon as it sees that, waiting or holding the lock, and answers with the live attempt if that
is on its own channel and client (what a reuse answers), else 503 ``payment_in_progress``
saying a newer choice replaced it. A reuse never steps aside (it costs the gateway nothing),
and neither does a request whose choice is the latest one (a double click still gets the same
QR code twice). Only a request that is not the latest steps aside, and the latest one waits
its turn and acts, so a burst ends with the last choice live instead of a trade per click.

The mark only decides who does *not* act; every request that acts goes through the same
row-locked phases as before, so the invariants never depend on Redis: without it (or with
``PAYMENT_LOCK_ENABLED=0``) nobody steps aside and the database serializes as it always did.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from orders.locks import LockWaitAbandoned, lock_order_row, order_lock, redis_key
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


class PaymentSuperseded(ApplicationError):
    """A newer apply-pay for another channel or client of the same order arrived while this one
    waited: that one is acted on, this one opens nothing. The contract's 503 code, so every
    client (and the payment page) already knows what to do: show the order's live payment."""

    def __init__(self) -> None:
        super().__init__(
            "payment_in_progress",
            "A newer payment choice for this order replaced this one and is being opened.",
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
    except PaymentSuperseded:
        metrics.apply_pay_result(channel=channel, outcome="superseded")
        logger.info("apply-pay superseded: %s/%s gave way to a newer choice", channel, client)
        raise
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
    if order.status == OrderStatus.UNPAID and _paid_cache_says_paid(order):
        raise order_already_paid()
    mark = ChoiceMark.set(order_id=order_id, channel=channel, client=client)
    try:
        with order_lock(order_id, give_up=mark.superseded if mark else None):
            return _payment_apply_locked(order, channel, client, mark)
    except LockWaitAbandoned:
        # Given way while waiting: answer as a reuse would if the live attempt is ours (a read
        # of committed rows; nothing is written without the lock), else say who won.
        order.refresh_from_db()
        _check_payable(order)
        live = _live_attempt_for(order_id, channel, client)
        if live is None:
            raise PaymentSuperseded() from None
        logs.bind(out_trade_no=live.out_trade_no)
        return ApplyPayResult(attempt=live, created=False), False


def _payment_apply_locked(
    order: Order, channel: str, client: str, mark: ChoiceMark | None
) -> tuple[ApplyPayResult, bool]:
    """Caller holds the order's Redis lock (or it is off or unavailable)."""
    order_id = order.pk
    switched = False
    for _ in range(3):
        # Asked before each round (outside the transaction: it is a Redis call), and heeded only
        # where this request would open a trade: a reuse is answered whoever came later.
        give_way = mark is not None and mark.superseded()
        attempt, to_close = _attempt_reuse_or_create(order_id, channel, client, create=not give_way)
        if attempt is not None and attempt.action:
            logs.bind(out_trade_no=attempt.out_trade_no)
            return ApplyPayResult(attempt=attempt, created=False), switched
        if give_way:
            # The newer choice closes what is live and opens its own trade; a trade opened here
            # would be closed again at once.
            raise PaymentSuperseded()
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


def _live_attempt_for(order_id: int, channel: str, client: str) -> PaymentAttempt | None:
    """The order's live attempt if it is on this channel and client and its trade is open."""
    live = PaymentAttempt.objects.filter(order_id=order_id, status__in=LIVE_STATUSES).first()
    if live is not None and live.channel == channel and live.client == client and live.action:
        return live
    return None


@dataclass(frozen=True)
class ChoiceMark:
    """This request's mark as the order's latest apply-pay choice (see the module docstring).

    One Redis key per order holds ``<token> <channel> <client>`` of the request that set it last
    (a plain SET: Redis orders the writes, the last writer is the latest request). It lives as
    long as a request may wait for the lock and then hold it; if it expires or Redis is away,
    ``superseded`` is False and everyone acts as if there were no mark.
    """

    key: str
    token: str
    choice: str

    @classmethod
    def set(cls, *, order_id: int, channel: str, client: str) -> ChoiceMark | None:
        if not settings.PAYMENT_LOCK_ENABLED:
            return None  # no lock to wait for: nothing arrives "while the lock is held"
        mark = cls(choice_key(order_id), secrets.token_hex(8), f"{channel} {client}")
        ttl = int(settings.PAYMENT_LOCK_WAIT_SECONDS + settings.PAYMENT_LOCK_TTL_SECONDS) + 1
        try:
            get_redis_connection("default").set(mark.key, f"{mark.token} {mark.choice}", ex=ttl)
        except RedisError:
            return None
        return mark

    def superseded(self) -> bool:
        """A newer request for this order, on another channel or client, has marked itself."""
        try:
            value = get_redis_connection("default").get(self.key)
        except RedisError:
            return False
        if value is None:
            return False
        token, _, choice = value.decode().partition(" ")
        return token != self.token and choice != self.choice


def choice_key(order_id: int) -> str:
    return redis_key("apply-pay", "latest", order_id)


def _paid_cache_says_paid(order: Order) -> bool:
    try:
        return cache.get(paid_cache_key(order.public_id)) == "paid"
    except Exception:
        return False


def _attempt_reuse_or_create(
    order_id: int, channel: str, client: str, *, create: bool = True
) -> tuple[PaymentAttempt | None, PaymentAttempt | None]:
    """Phase 1, under the order row lock: reuse, mark for closing, or create the attempt
    (with ``create=False``, ``(None, None)`` where it would have created one)."""
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
        if not create:
            return None, None
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
