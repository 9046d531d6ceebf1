"""Rows made through the services, as production makes them."""

from __future__ import annotations

from orders.models import Order
from orders.services import OrderItem, order_create
from payments.models import PaymentAttempt
from shop.models import Product


def make_order(
    sku: str = "TEA-1", quantity: int = 1, *, price: int = 1999, stock: int = 100
) -> Order:
    if not Product.objects.filter(sku=sku).exists():
        Product.objects.create(sku=sku, name=f"Product {sku}", price_amount=price, stock=stock)
    return order_create(
        items=[OrderItem(sku=sku, quantity=quantity)], email="shopper@example.com"
    ).order


def make_attempt(
    order: Order, *, channel: str = "alipay", client: str = "pc", status: str = "paying"
) -> PaymentAttempt:
    return PaymentAttempt.objects.create(
        order=order,
        channel=channel,
        client=client,
        amount=order.total_amount,
        currency=order.currency,
        status=status,
        action={"type": "qr", "code_url": "http://sandbox/cashier"},
    )


def make_paid_order(*, sku: str = "TEA-1", price: int = 10000, channel: str = "alipay") -> Order:
    """An order paid through the decision service, as a capture callback would pay it."""
    from payments.decision import attempt_apply_trade_status
    from payments.gateways.base import TradeOutcome, TradeStatus

    order = make_order(sku=sku, price=price)
    attempt = make_attempt(order, channel=channel)
    attempt_apply_trade_status(
        attempt_id=attempt.pk,
        status=TradeStatus(
            outcome=TradeOutcome.PAID, out_trade_no=attempt.out_trade_no, amount=attempt.amount
        ),
        source="test",
    )
    order.refresh_from_db()
    return order
