"""Order access: the bearer token of API clients and the session of the shopper who ordered.

The token is derived (HMAC of the order id under SECRET_KEY), never stored, so a replayed
idempotent request can answer with the same token the first answer carried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from django.conf import settings
from django.http import HttpRequest

from orders.models import Order
from shop.cart import SHOPPER_KEY


def order_access_token(order: Order) -> str:
    mac = hmac.new(
        settings.SECRET_KEY.encode(), f"order-access:{order.public_id}".encode(), hashlib.sha256
    )
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def bearer_token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def can_access_order(request: HttpRequest, order: Order) -> bool:
    token = bearer_token(request)
    if token and hmac.compare_digest(token, order_access_token(order)):
        return True
    session = getattr(request, "session", None)
    owner = session.get(SHOPPER_KEY) if session is not None else None
    return (
        bool(owner) and bool(order.owner_key) and hmac.compare_digest(str(owner), order.owner_key)
    )
