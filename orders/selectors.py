from __future__ import annotations

from django.http import HttpRequest

from orders.access import can_access_order
from orders.models import Order
from shop.errors import NotFound


def order_get_for_request(request: HttpRequest, public_id: str) -> Order:
    """The order if this request may see it; 404 otherwise (a 403 would leak its existence)."""
    order = Order.objects.filter(public_id=public_id).first()
    if order is None or not can_access_order(request, order):
        raise NotFound("No such order.")
    return order
