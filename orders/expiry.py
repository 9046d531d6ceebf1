"""Expiry: unpaid orders past their deadline are closed — gateway first, then the order."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.utils import timezone

from orders.models import CloseReason, IdempotencyKey, Order, OrderStatus

logger = logging.getLogger(__name__)


def expire_orders_sweep() -> int:
    """Close expired unpaid orders. Idempotent: two sweeps at once close each order once."""
    from payments.locks import OrderBusy
    from payments.services import order_cancel_or_expire

    due = list(
        Order.objects.filter(status=OrderStatus.UNPAID, expires_at__lte=timezone.now())
        .order_by("expires_at")
        .values_list("pk", flat=True)[: settings.SWEEP_BATCH_SIZE]
    )
    closed = 0
    for order_id in due:
        try:
            if order_cancel_or_expire(order_id=order_id, reason=CloseReason.EXPIRED):
                closed += 1
        except OrderBusy:
            continue  # someone is paying it right now; the next sweep looks again
    return closed


def purge_idempotency_keys() -> int:
    cutoff = timezone.now() - dt.timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
