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
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from refunds.models import Refund, RefundReason, RefundStatus
from shop.errors import ApplicationError

logger = logging.getLogger(__name__)


def refundable_amount(attempt_id: int) -> int:
    """What is left to refund on an attempt. Exact only under the attempt's row lock."""
    from payments.models import PaymentAttempt

    captured = PaymentAttempt.objects.values_list("captured_amount", flat=True).get(pk=attempt_id)
    committed = (
        Refund.objects.filter(attempt_id=attempt_id)
        .exclude(status=RefundStatus.FAILED)
        .aggregate(total=Sum("amount"))["total"]
        or 0
    )
    return int(captured) - int(committed)


def refund_create_automatic(*, attempt: object, reason: str) -> int:
    """Record the automatic refund of a capture that must not be kept; returns its id or 0.

    Caller holds the order and attempt row locks inside a transaction; the refund is executed
    after commit by ``refund_dispatch``.
    """
    from payments.models import PaymentAttempt

    assert isinstance(attempt, PaymentAttempt)
    amount = refundable_amount(attempt.pk)
    if amount <= 0:
        return 0
    try:
        with transaction.atomic():
            refund = Refund.objects.create(
                attempt=attempt,
                order_id=attempt.order_id,
                amount=amount,
                currency=attempt.currency,
                reason=reason,
                note="automatic",
            )
    except IntegrityError:
        return 0  # this cause already has its refund
    logger.warning(
        "automatic refund %s of %s for %s (%s)", refund.out_refund_no, amount, attempt, reason
    )
    return refund.pk


def refund_request(
    *,
    order_id: int,
    amount: int,
    reason: str,
    note: str = "",
    requested_by: AbstractBaseUser | None = None,
) -> Refund:
    """Refund (part of) a paid order's capture, as ops or on the customer's request."""
    from orders.models import Order
    from payments.models import PaymentAttempt

    if reason not in (RefundReason.CUSTOMER_REQUEST, RefundReason.OPS):
        raise ApplicationError("invalid_reason", "Reason must be customer_request or ops.")
    if amount <= 0:
        raise ApplicationError("invalid_amount", "The refund amount must be positive.")
    with transaction.atomic(durable=True):
        order = Order.objects.select_for_update().get(pk=order_id)
        if not order.is_paid or order.paid_attempt_id is None:
            raise ApplicationError(
                "order_not_paid", "Only a paid order can be refunded.", status=409
            )
        attempt = PaymentAttempt.objects.select_for_update().get(pk=order.paid_attempt_id)
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
            approval_required=amount > settings.REFUND_APPROVAL_THRESHOLD,
        )
    if refund.is_approved:
        refund_dispatch(refund.pk)
    return refund


def refund_approve(*, refund_id: int, approved_by: AbstractBaseUser) -> Refund:
    with transaction.atomic(durable=True):
        refund = Refund.objects.select_for_update().get(pk=refund_id)
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


def refund_retry(*, refund_id: int) -> Refund:
    """Send a failed refund again under a fresh out_refund_no (the failed one moved no money)."""
    from orders.models import Order
    from payments.models import PaymentAttempt
    from refunds.models import new_out_refund_no

    order_id, attempt_id = Refund.objects.values_list("order_id", "attempt_id").get(pk=refund_id)
    with transaction.atomic(durable=True):
        Order.objects.select_for_update().get(pk=order_id)
        PaymentAttempt.objects.select_for_update().get(pk=attempt_id)
        refund = Refund.objects.select_for_update().get(pk=refund_id)
        if refund.status != RefundStatus.FAILED:
            raise ApplicationError("refund_not_failed", "Only a failed refund can be retried.")
        if refund.amount > refundable_amount(refund.attempt_id):
            raise ApplicationError(
                "refund_exceeds_capture", "Retrying would refund more than was captured."
            )
        refund.status = RefundStatus.PENDING
        refund.out_refund_no = new_out_refund_no()
        refund.last_error = ""
        refund.save(update_fields=["status", "out_refund_no", "last_error", "updated_at"])
    refund_dispatch(refund.pk)
    return refund


def refund_dispatch(refund_id: int) -> None:
    """Execute the refund by Celery once the transaction that recorded it has committed."""
    from refunds.tasks import execute_refund

    def _send() -> None:
        try:
            execute_refund.delay(refund_id)
        except Exception:  # broker down: the refund sweep picks it up
            logger.warning("refund %s dispatch deferred", refund_id, exc_info=True)

    transaction.on_commit(_send)


def refund_execute(*, refund_id: int) -> str:
    """Send the refund to the gateway (no transaction open) and apply the answer.

    Returns the refund's outcome as the gateway put it; ``unknown`` means try again later with
    the same ``out_refund_no``, which the gateway treats as the same refund.
    """
    from payments.gateways.base import RefundRequest
    from payments.gateways.registry import get_gateway

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
    )
    return str(result.outcome)


def refund_apply_result(
    *, out_refund_no: str, outcome: str, gateway_refund_id: str = "", error: str = ""
) -> bool:
    """Apply what a gateway said about a refund (answer, query or notification). Idempotent.

    Returns True if the refund moved to a final state now.
    """
    from orders.models import Order, OrderStatus
    from orders.services import outbox_enqueue
    from payments.gateways.base import RefundOutcome
    from payments.realtime import publish_order_update

    order_id = (
        Refund.objects.filter(out_refund_no=out_refund_no)
        .values_list("order_id", flat=True)
        .first()
    )
    if order_id is None:
        return False
    now = timezone.now()
    with transaction.atomic(durable=True):
        order = Order.objects.select_for_update().get(pk=order_id)
        refund = Refund.objects.select_for_update().get(out_refund_no=out_refund_no)
        if refund.status != RefundStatus.PENDING:
            return False  # final states never move
        if gateway_refund_id:
            refund.gateway_refund_id = gateway_refund_id
        if outcome == RefundOutcome.SUCCEEDED:
            refund.status = RefundStatus.SUCCEEDED
            refund.succeeded_at = now
            refund.next_check_at = None
            refund.last_error = ""
        elif outcome == RefundOutcome.FAILED:
            refund.status = RefundStatus.FAILED
            refund.next_check_at = None
            refund.last_error = error[:500] or "rejected by the gateway"
            logger.error("refund %s failed at the gateway: %s", out_refund_no, error)
        else:
            refund.last_error = error[:500]
            refund.save(update_fields=["gateway_refund_id", "last_error", "updated_at"])
            return False
        refund.save()
        if refund.status == RefundStatus.SUCCEEDED:
            if order.paid_attempt_id == refund.attempt_id and order.is_paid:
                refunded = (
                    Refund.objects.filter(
                        attempt_id=refund.attempt_id, status=RefundStatus.SUCCEEDED
                    ).aggregate(total=Sum("amount"))["total"]
                    or 0
                )
                new_status = (
                    OrderStatus.REFUNDED
                    if refunded >= order.total_amount
                    else OrderStatus.PARTIALLY_REFUNDED
                )
                Order.objects.filter(pk=order.pk).update(status=new_status, updated_at=now)
            outbox_enqueue(
                topic="refund.succeeded",
                payload={
                    "order_id": order.public_id,
                    "refund_id": refund.public_id,
                    "amount": refund.amount,
                    "currency": refund.currency,
                    "reason": refund.reason,
                },
            )
        publish_order_update(order.public_id)
    return True


def refund_query_and_apply(*, refund_id: int) -> str:
    """Ask the gateway where a pending refund stands (no transaction open) and apply it."""
    from payments.gateways.base import RefundOutcome
    from payments.gateways.registry import get_gateway

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
    )
    return str(result.outcome)
