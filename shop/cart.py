"""The session cart: {sku: quantity}. Prices are never stored here; the order snapshots them."""

from __future__ import annotations

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase

from shop.errors import ApplicationError
from shop.ids import new_secret_token

CART_KEY = "cart"
SHOPPER_KEY = "shopper_key"


def cart_items(session: SessionBase) -> dict[str, int]:
    raw = session.get(CART_KEY, {})
    return {str(sku): int(qty) for sku, qty in raw.items() if int(qty) > 0}


def cart_set(session: SessionBase, *, sku: str, quantity: int) -> None:
    if quantity < 0 or quantity > settings.ORDER_MAX_QUANTITY:
        raise ApplicationError(
            "invalid_quantity", f"Quantity must be between 0 and {settings.ORDER_MAX_QUANTITY}."
        )
    items = cart_items(session)
    if quantity == 0:
        items.pop(sku, None)
    else:
        items[sku] = quantity
    session[CART_KEY] = items


def cart_add(session: SessionBase, *, sku: str, quantity: int = 1) -> None:
    items = cart_items(session)
    cart_set(
        session, sku=sku, quantity=min(items.get(sku, 0) + quantity, settings.ORDER_MAX_QUANTITY)
    )


def cart_clear(session: SessionBase) -> None:
    session[CART_KEY] = {}


def shopper_key(session: SessionBase) -> str:
    """A random key naming this browser's shopper; orders made from pages belong to it."""
    key = session.get(SHOPPER_KEY)
    if not key:
        key = new_secret_token()
        session[SHOPPER_KEY] = key
    return str(key)
