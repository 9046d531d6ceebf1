"""Attempt row locks, taken after the order row lock (see ``orders.locks`` for the order)."""

from __future__ import annotations

from orders.locks import OrderBusy, lock_order_row, locked_row, order_lock, redis_key
from orders.models import Order
from payments.models import PaymentAttempt

__all__ = ["OrderBusy", "lock_attempt_row", "lock_order_then_attempt", "order_lock", "redis_key"]


def lock_attempt_row(attempt_id: int) -> PaymentAttempt:
    """Lock and re-read one attempt. Caller already holds its order's row lock."""
    return locked_row(PaymentAttempt, attempt_id)


def lock_order_then_attempt(
    attempt_id: int, *, order_id: int | None = None
) -> tuple[Order, PaymentAttempt]:
    """Lock an attempt's order row, then the attempt row — never the other way round.

    Caller is inside ``transaction.atomic`` and holds no row lock of this order yet. An
    ``order_id`` the caller already knows saves a lookup; it must be the attempt's order
    (an attempt never moves to another order), which is checked once both rows are locked.
    """
    if order_id is None:
        order_id = PaymentAttempt.objects.values_list("order_id", flat=True).get(pk=attempt_id)
    order = lock_order_row(order_id)
    attempt = lock_attempt_row(attempt_id)
    if attempt.order_id != order.pk:
        raise ValueError(
            f"attempt {attempt_id} belongs to order {attempt.order_id}, not {order_id}"
        )
    return order, attempt
