"""Refund reads."""

from __future__ import annotations

from django.db.models import Sum

from refunds.models import Refund, RefundStatus


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


def refunded_amount(attempt_id: int) -> int:
    """What the gateway has paid back on an attempt (succeeded refunds)."""
    return int(
        Refund.objects.filter(attempt_id=attempt_id, status=RefundStatus.SUCCEEDED).aggregate(
            total=Sum("amount")
        )["total"]
        or 0
    )
