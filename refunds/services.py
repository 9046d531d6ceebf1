"""Refund writes: recorded under the attempt's row lock, executed outside any transaction.

Never over-refund: the sum of non-failed refunds of an attempt never exceeds what it captured,
checked while holding the attempt row lock. One automatic refund per (attempt, cause), held by
a unique constraint. Every retry at the gateway reuses the refund's ``out_refund_no``.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from orders.locks import lock_order_row, order_lock
from payments import decision
from payments.gateways.base import RefundOutcome, RefundRequest
from payments.gateways.registry import get_gateway
from payments.locks import lock_attempt_row
from refunds.dispatch import refund_dispatch
from refunds.models import Refund, RefundReason, RefundStatus
from refunds.selectors import refundable_amount
from shop.errors import ApplicationError

logger = logging.getLogger(__name__)

__all__ = [
    "refund_apply_result",
    "refund_approve",
    "refund_dispatch",
    "refund_execute",
    "refund_query_and_apply",
    "refund_request",
    "refund_retry",
    "refundable_amount",
]


def _order_id_of(refund_id: int) -> int:
    return int(Refund.objects.values_list("order_id", flat=True).get(pk=refund_id))


def refund_needs_approval(*, order_id: int, amount: int) -> bool:
    """Whether a requested refund of ``amount`` needs a second person: when what staff have
    asked to refund on this order (every request not failed, this one included) goes over the
    threshold — so splitting a large refund into small ones does not avoid approval.

    Caller holds the order row lock, so concurrent requests see each other's rows."""
    requested = (
        Refund.objects.filter(
            order_id=order_id, reason__in=[RefundReason.CUSTOMER_REQUEST, RefundReason.OPS]
        )
        .exclude(status=RefundStatus.FAILED)
        .aggregate(total=Sum("amount"))["total"]
        or 0
    )
    return int(requested) + amount > settings.REFUND_APPROVAL_THRESHOLD


def refund_request(
    *,
    order_id: int,
    amount: int,
    reason: str,
    note: str = "",
    requested_by: AbstractBaseUser | None = None,
) -> Refund:
    """Refund (part of) a paid order's capture, as ops or on the customer's request."""
    if reason not in (RefundReason.CUSTOMER_REQUEST, RefundReason.OPS):
        raise ApplicationError("invalid_reason", "Reason must be customer_request or ops.")
    if amount <= 0:
        raise ApplicationError("invalid_amount", "The refund amount must be positive.")
    with order_lock(order_id), transaction.atomic(durable=True):
        order = lock_order_row(order_id)
        if not order.is_paid or order.paid_attempt_id is None:
            raise ApplicationError(
                "order_not_paid", "Only a paid order can be refunded.", status=409
            )
        attempt = lock_attempt_row(order.paid_attempt_id)
        left = refundable_amount(attempt.pk)
        if amount > left:
            raise ApplicationError(
                "refund_exceeds_capture",
                f"At most {left} can still be refunded on this order.",
                status=409,
            )
        refund = Refund.objects.create(
            attempt=attempt,
            order=order,
            amount=amount,
            currency=attempt.currency,
            reason=reason,
            note=note,
            requested_by_id=requested_by.pk if requested_by is not None else None,
            approval_required=refund_needs_approval(order_id=order.pk, amount=amount),
        )
    if refund.is_approved:
        refund_dispatch(refund.pk)
    return refund


def refund_approve(*, refund_id: int, approved_by: AbstractBaseUser) -> Refund:
    order_id = _order_id_of(refund_id)
    with order_lock(order_id), transaction.atomic(durable=True):
        lock_order_row(order_id)
        refund = Refund.objects.select_for_update(of=("self",)).get(pk=refund_id)
        if refund.requested_by_id is not None and refund.requested_by_id == approved_by.pk:
            raise ApplicationError(
                "second_approver_required", "A second staff member must approve this refund."
            )
        if refund.approved_at is None:
            refund.approved_by_id = approved_by.pk
            refund.approved_at = timezone.now()
            refund.save(update_fields=["approved_by", "approved_at", "updated_at"])
    refund_dispatch(refund.pk)
    return refund


def refund_retry(*, refund_id: int, cause: str = "ops") -> Refund:
    """Send a failed refund again under a fresh out_refund_no (the failed one moved no money)."""
    with order_lock(_order_id_of(refund_id)):
        return decision.refund_resend(refund_id=refund_id, cause=cause)


def refund_execute(*, refund_id: int) -> str:
    """Send the refund to the gateway (no transaction open) and apply the answer.

    Returns the refund's outcome as the gateway put it; ``unknown`` means try again later with
    the same ``out_refund_no``, which the gateway treats as the same refund.
    """
    refund = Refund.objects.select_related("attempt").filter(pk=refund_id).first()
    if refund is None:
        return "missing"
    if refund.status != RefundStatus.PENDING or not refund.is_approved:
        return refund.status
    attempt = refund.attempt
    Refund.objects.filter(pk=refund.pk).update(
        submissions=F("submissions") + 1,
        next_check_at=timezone.now() + dt.timedelta(seconds=settings.SWEEP_INTERVAL_SECONDS * 3),
    )
    result = get_gateway(attempt.channel).refund(
        RefundRequest(
            out_trade_no=attempt.out_trade_no,
            out_refund_no=refund.out_refund_no,
            amount=refund.amount,
            total_amount=attempt.amount,
            currency=refund.currency,
            reason=refund.get_reason_display(),
            notify_url=f"{settings.SHOP_BASE_URL}/payments/notify/{attempt.channel}/",
        )
    )
    refund_apply_result(
        out_refund_no=refund.out_refund_no,
        outcome=result.outcome,
        gateway_refund_id=result.gateway_refund_id,
        error=result.error,
        amount=result.amount,
        cause="refund_answer",
    )
    return str(result.outcome)


def refund_apply_result(
    *,
    out_refund_no: str,
    outcome: str,
    gateway_refund_id: str = "",
    error: str = "",
    amount: int | None = None,
    cause: str = "gateway",
) -> bool:
    """Apply what a gateway said about a refund (answer, query or notification), under the
    order's Redis lock; the decision service moves the refund and its order. Idempotent.

    Returns True if the refund moved to a final state now.
    """
    order_id = (
        Refund.objects.filter(out_refund_no=out_refund_no)
        .values_list("order_id", flat=True)
        .first()
    )
    if order_id is None:
        return False
    with order_lock(order_id):
        return decision.refund_apply_result(
            out_refund_no=out_refund_no,
            outcome=outcome,
            gateway_refund_id=gateway_refund_id,
            error=error,
            amount=amount,
            cause=cause,
        )


def refund_query_and_apply(*, refund_id: int) -> str:
    """Ask the gateway where a pending refund stands (no transaction open) and apply it."""
    refund = Refund.objects.select_related("attempt").filter(pk=refund_id).first()
    if refund is None:
        return "missing"
    if refund.status != RefundStatus.PENDING or not refund.is_approved:
        return refund.status
    result = get_gateway(refund.attempt.channel).refund_query(
        out_trade_no=refund.attempt.out_trade_no, out_refund_no=refund.out_refund_no
    )
    if result.outcome == RefundOutcome.NOT_FOUND:
        # The gateway never got it (our request was lost): send it again, same out_refund_no.
        return refund_execute(refund_id=refund_id)
    refund_apply_result(
        out_refund_no=refund.out_refund_no,
        outcome=result.outcome,
        gateway_refund_id=result.gateway_refund_id,
        error=result.error,
        amount=result.amount,
        cause="refund_query",
    )
    return str(result.outcome)
