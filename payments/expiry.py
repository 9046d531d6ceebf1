"""Expiry: unpaid orders past their deadline are closed — gateway first, then the order."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from orders.locks import OrderBusy
from orders.models import CloseReason, Order, OrderStatus
from payments.services import order_cancel_or_expire


def expire_orders_sweep() -> int:
    """Close expired unpaid orders. Idempotent: two sweeps at once close each order once."""
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
