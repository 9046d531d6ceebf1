from __future__ import annotations

from django.http import HttpRequest

from orders.access import bearer_token, can_access_order
from orders.models import Order
from shop.errors import NotFound


def order_get_for_request(request: HttpRequest, public_id: str) -> Order:
    """The order if this request may see it; 404 otherwise (a 403 would leak its existence)."""
    order = Order.objects.filter(public_id=public_id).first()
    if order is None or not can_access_order(request, order):
        raise NotFound("No such order.")
    return order


def order_get_for_api(request: HttpRequest, public_id: str) -> Order:
    """``order_get_for_request`` for the JSON API. DRF views are exempt from the CSRF middleware,
    so an unsafe call that rides on the shopper's session cookie (no bearer token) must carry
    the CSRF token itself: otherwise another site could cancel or pay the shopper's order."""
    order = order_get_for_request(request, public_id)
    if request.method not in ("GET", "HEAD", "OPTIONS") and not bearer_token(request):
        from rest_framework.authentication import CSRFCheck
        from rest_framework.exceptions import PermissionDenied

        http_request = getattr(request, "_request", request)
        check = CSRFCheck(lambda _request: None)  # type: ignore[arg-type,return-value]
        check.process_request(http_request)
        reason = check.process_view(http_request, None, (), {})  # type: ignore[arg-type]
        if reason:
            raise PermissionDenied(f"CSRF failed: {reason}")
    return order
