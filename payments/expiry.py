"""Expiry: unpaid orders past their deadline are closed — gateway first, then the order."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from orders.locks import OrderBusy
from orders.models import CloseReason, Order, OrderStatus
from payments.decision import orders_close_expired_bulk
from payments.models import UNSETTLED_STATUSES, PaymentAttempt
from payments.services import order_cancel_or_expire


def expire_orders_sweep() -> int:
    """Close expired unpaid orders; returns how many were closed. Idempotent: two sweeps at
    once close each order once.

    Orders with no unsettled attempt need no gateway: up to ``SWEEP_BATCH_SIZE`` of them are
    closed in one transaction (``orders_close_expired_bulk``). Then, among the next
    ``SWEEP_BATCH_SIZE`` expired orders, those with an unsettled attempt are closed one by one,
    the attempt at its gateway first (``order_cancel_or_expire``): an order whose gateway
    cannot be reached stays open, and never holds up the orders that need no gateway.
    """
    batch = settings.SWEEP_BATCH_SIZE
    closed = len(orders_close_expired_bulk(limit=batch))
    due = list(
        Order.objects.filter(status=OrderStatus.UNPAID, expires_at__lte=timezone.now())
        .order_by("expires_at")
        .values_list("pk", flat=True)[:batch]
    )
    with_attempt = set(
        PaymentAttempt.objects.filter(order_id__in=due, status__in=UNSETTLED_STATUSES).values_list(
            "order_id", flat=True
        )
    )
    for order_id in (pk for pk in due if pk in with_attempt):
        try:
            if order_cancel_or_expire(order_id=order_id, reason=CloseReason.EXPIRED):
                closed += 1
        except OrderBusy:
            continue  # someone is paying it right now; the next sweep looks again
    return closed
