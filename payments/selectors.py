"""The shopper pages' read model: what a page (and its live updates) says about an order.

"Confirming — don't pay again" only when we do not know how a payment ended: an attempt set
aside for ops, a live trade whose last answer was a timeout or an error, or a shopper just back
from the gateway whose payment is not confirmed yet. An open, unpaid trade is "waiting".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from orders.models import Order, OrderStatus
from payments.gateways.base import TradeOutcome
from payments.models import LIVE_STATUSES, AttemptStatus, PaymentAttempt
from refunds.models import Refund, RefundReason, RefundStatus
from shop.money import format_money

CONFIRMING_TEXT = _("We are confirming your payment — please don't pay again.")


class PageState(StrEnum):
    PAID = "paid"
    CLOSED = "closed"  # closed, or past its deadline: it can no longer be paid
    CONFIRMING = "confirming"  # an attempt's outcome is unknown: don't pay again
    AWAITING = "awaiting"  # a live attempt: the shopper may be paying right now
    UNPAID = "unpaid"  # nothing open: choose how to pay


STATE_TEXT = {
    PageState.PAID: _("Payment received."),
    PageState.CLOSED: _("This order is closed and can no longer be paid."),
    PageState.CONFIRMING: CONFIRMING_TEXT,
    PageState.AWAITING: _("Waiting for your payment. This page updates by itself."),
    PageState.UNPAID: _("Not paid yet."),
}

REFUND_STATE_TEXT = {
    RefundStatus.PENDING: _("Refund in progress"),
    RefundStatus.SUCCEEDED: _("Refunded"),
    # A refund the gateway turned down is retried or handled by our staff; the shopper is owed
    # the money either way, so we do not tell them it "failed".
    RefundStatus.FAILED: _("Refund delayed — our team is on it"),
}

REFUND_REASON_TEXT = {
    RefundReason.DUPLICATE_PAYMENT: _("A second payment for this order."),
    RefundReason.ORDER_CLOSED: _("This payment arrived after the order had closed."),
    RefundReason.CUSTOMER_REQUEST: _("Refunded at your request."),
    RefundReason.OPS: _("Refunded by our team."),
}

# Shopper-safe wording per application error code from apply-pay and check-now.
ERROR_TEXT = {
    "payment_in_progress": _(
        "We are confirming your payment — please don't pay again. A previous payment for this "
        "order is still open; this page updates by itself."
    ),
    "order_closed": _("This order is closed and can no longer be paid."),
}


# --- reading ---------------------------------------------------------------------------------


def live_attempt(order: Order) -> PaymentAttempt | None:
    return order.attempts.filter(status__in=LIVE_STATUSES).first()


def page_state(
    order: Order, live: PaymentAttempt | None = None, *, returned: bool = False
) -> PageState:
    """What the shopper should be told about ``order`` now (``live``: its live attempt, if read;
    ``returned``: the shopper just came back from the gateway)."""
    if order.is_paid:
        return PageState.PAID
    if order.status == OrderStatus.CLOSED:
        return PageState.CLOSED
    if order.attempts.filter(status=AttemptStatus.NEEDS_ATTENTION).exists():
        return PageState.CONFIRMING
    if live is None:
        live = live_attempt(order)
    if live is not None and (returned or live.last_outcome == TradeOutcome.UNKNOWN):
        return PageState.CONFIRMING  # we do not know: the shopper may have paid
    if order.expires_at <= timezone.now():
        return PageState.CLOSED
    return PageState.AWAITING if live is not None else PageState.UNPAID


@dataclass(frozen=True)
class RefundView:
    amount: str
    channel: str
    reason: str
    reason_text: str
    status: str
    status_text: str


def refund_views(order: Order) -> list[RefundView]:
    refunds = Refund.objects.filter(order=order).select_related("attempt").order_by("created_at")
    return [
        RefundView(
            amount=format_money(r.amount, r.currency),
            channel=str(r.attempt.get_channel_display()),
            reason=r.reason,
            reason_text=str(REFUND_REASON_TEXT.get(RefundReason(r.reason), _("Refund."))),
            status=r.status,
            status_text=str(REFUND_STATE_TEXT.get(RefundStatus(r.status), r.get_status_display())),
        )
        for r in refunds
    ]


def status_body(
    order: Order, refunds: list[RefundView] | None = None, *, returned: bool = False
) -> dict[str, Any]:
    """The order as the shopper's pages see it; ``key`` changes whenever a page should change."""
    live = live_attempt(order)
    state = page_state(order, live, returned=returned)
    if refunds is None:
        refunds = refund_views(order)
    key = ":".join(
        [state.value, live.public_id if live else "-", *(f"{r.reason}={r.status}" for r in refunds)]
    )
    return {
        "id": order.public_id,
        "status": order.status,
        "state": state.value,
        "text": str(STATE_TEXT[state]),  # in the request's language
        "paid": order.is_paid,
        "confirming": state is PageState.CONFIRMING,
        "live_attempt": live.public_id if live else None,
        "refunds": [
            {"amount": r.amount, "channel": r.channel, "reason": r.reason, "status": r.status}
            for r in refunds
        ],
        "key": key,
    }


def status_context(order: Order, *, returned: bool = False) -> dict[str, Any]:
    """Template context for the live status box every order page carries."""
    refunds = refund_views(order)
    body = status_body(order, refunds, returned=returned)
    return {
        "state": body["state"],
        "state_text": body["text"],
        "state_key": body["key"],
        "refunds": refunds,
    }
