"""The refund sweep: heal what callbacks and tasks missed. Idempotent and safe in parallel."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from orders.locks import OrderBusy, order_lock
from orders.models import OrderStatus
from payments.decision import refund_record_unkept_capture
from payments.models import AttemptStatus, PaymentAttempt
from refunds.models import Refund, RefundReason, RefundStatus
from refunds.services import refund_query_and_apply

logger = logging.getLogger(__name__)


def refund_sweep() -> dict[str, int]:
    created = _refund_unkept_captures()
    checked = _check_pending()
    return {"created": created, "checked": checked}


def _refund_unkept_captures() -> int:
    """Succeeded attempts that are not their order's paid attempt and have no automatic refund."""
    has_auto_refund = Refund.objects.filter(
        attempt=OuterRef("pk"),
        reason__in=[RefundReason.DUPLICATE_PAYMENT, RefundReason.ORDER_CLOSED],
    )
    candidates = (
        PaymentAttempt.objects.filter(status=AttemptStatus.SUCCEEDED)
        .exclude(order__paid_attempt=F("pk"))
        .filter(~Exists(has_auto_refund))
        .filter(Q(order__status=OrderStatus.CLOSED) | Q(order__paid_attempt__isnull=False))
        .values_list("pk", "order_id")[: settings.SWEEP_BATCH_SIZE]
    )
    created = 0
    for attempt_id, order_id in list(candidates):
        try:
            with order_lock(order_id, wait=1.0):
                created += refund_record_unkept_capture(attempt_id=attempt_id, cause="refund_sweep")
        except OrderBusy:
            continue  # someone is deciding this order now; the next sweep looks again
    return created


def _check_pending() -> int:
    """Pending refunds whose answer is overdue: ask the gateway (or send again, same key)."""
    now = timezone.now()
    due = (
        Refund.objects.filter(
            status=RefundStatus.PENDING,
        )
        .filter(Q(approval_required=False) | Q(approved_at__isnull=False))
        .filter(
            Q(next_check_at__lte=now)
            | Q(
                next_check_at__isnull=True,
                created_at__lte=now - dt.timedelta(seconds=settings.SWEEP_INTERVAL_SECONDS),
            )
        )
    )
    checked = 0
    for refund_id in list(due.values_list("pk", flat=True)[: settings.SWEEP_BATCH_SIZE]):
        # Claim by pushing the next check forward; a parallel sweep skips it.
        claimed = (
            Refund.objects.filter(pk=refund_id, status=RefundStatus.PENDING)
            .filter(Q(next_check_at__lte=now) | Q(next_check_at__isnull=True))
            .update(next_check_at=now + dt.timedelta(seconds=settings.SWEEP_INTERVAL_SECONDS * 3))
        )
        if claimed:
            refund_query_and_apply(refund_id=refund_id)
            checked += 1
    return checked
