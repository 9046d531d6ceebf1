"""API shapes: input serializers validate, output functions present. Money is {amount, currency}."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from orders.access import order_access_token
from orders.models import Order
from shop.money import Money


class OrderItemInput(serializers.Serializer):
    sku = serializers.CharField(max_length=64)
    quantity = serializers.IntegerField(min_value=1, max_value=settings.ORDER_MAX_QUANTITY)


class OrderCreateInput(serializers.Serializer):
    # A ListField rather than many=True, so the schema says minItems/maxItems as we enforce.
    items = serializers.ListField(
        child=OrderItemInput(), min_length=1, max_length=settings.ORDER_MAX_LINES
    )
    email = serializers.EmailField(max_length=254)


def money_out(amount: int, currency: str) -> dict[str, Any]:
    return Money(amount, currency).as_dict()


def attempt_out(attempt: Any) -> dict[str, Any]:
    return {
        "id": attempt.public_id,
        "channel": attempt.channel,
        "client": attempt.client,
        "status": attempt.status,
        "out_trade_no": attempt.out_trade_no,
        "amount": money_out(attempt.amount, attempt.currency),
        "action": attempt.action or None,
        "created_at": attempt.created_at.isoformat(),
        "paid_at": attempt.paid_at.isoformat() if attempt.paid_at else None,
    }


def refund_out(refund: Any) -> dict[str, Any]:
    return {
        "id": refund.public_id,
        "amount": money_out(refund.amount, refund.currency),
        "reason": refund.reason,
        "status": refund.status,
        "out_refund_no": refund.out_refund_no,
        "payment": refund.attempt.public_id,
        "created_at": refund.created_at.isoformat(),
    }


def order_out(order: Order, *, with_token: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": order.public_id,
        "status": order.status,
        "email": order.email,
        "total": money_out(order.total_amount, order.currency),
        "lines": [
            {
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price": money_out(line.unit_price, order.currency),
                "line_total": money_out(line.line_total, order.currency),
            }
            for line in order.lines.all()
        ],
        "expires_at": order.expires_at.isoformat(),
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
        "closed_at": order.closed_at.isoformat() if order.closed_at else None,
        "close_reason": order.close_reason or None,
        "payments": [attempt_out(a) for a in order.attempts.order_by("created_at")],
        "refunds": [
            refund_out(r) for r in order.refunds.select_related("attempt").order_by("created_at")
        ],
    }
    if with_token:
        body["access_token"] = order_access_token(order)
    return body
