"""Order writes. Each public function owns its transaction.

Lock order: see ``orders.locks``; products are locked in id order (conditional stock updates),
before the order row exists. Order status is decided in ``payments.decision`` alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from orders.models import IdempotencyKey, Order, OrderLine
from shop.errors import ApplicationError, Conflict
from shop.models import OutboxEvent, Product
from shop.outbox import outbox_kick

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrderItem:
    sku: str
    quantity: int


@dataclass(frozen=True)
class OrderCreation:
    order: Order
    created: bool  # False when an earlier identical request's order is returned


def request_digest(payload: Any) -> str:
    """A stable digest of a request body: same meaning, same digest, whatever the key order."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _merge_items(items: list[OrderItem]) -> dict[str, int]:
    if not items:
        raise ApplicationError("empty_order", "An order needs at least one item.")
    if len(items) > settings.ORDER_MAX_LINES:
        raise ApplicationError(
            "too_many_items", f"An order may have at most {settings.ORDER_MAX_LINES} lines."
        )
    merged: dict[str, int] = {}
    for item in items:
        merged[item.sku] = merged.get(item.sku, 0) + item.quantity
    for sku, quantity in merged.items():
        if quantity < 1 or quantity > settings.ORDER_MAX_QUANTITY:
            raise ApplicationError(
                "invalid_quantity",
                f"Quantity of {sku} must be between 1 and {settings.ORDER_MAX_QUANTITY}.",
            )
    return merged


class _Replay(Exception):
    pass


def order_create(
    *,
    items: list[OrderItem],
    email: str,
    owner_key: str = "",
    checkout_token: str | None = None,
    idempotency_key: str | None = None,
    digest: str = "",
) -> OrderCreation:
    """Create an order and reserve its stock atomically.

    With ``idempotency_key`` (API) or ``checkout_token`` (form), a repeat of the same request
    returns the first order instead of making another; a concurrent repeat waits on the unique
    index until the first commits, then finds its order.
    """
    merged = _merge_items(items)
    try:
        return _order_create(merged, email, owner_key, checkout_token, idempotency_key, digest)
    except _Replay:
        return _order_replay(checkout_token, idempotency_key, digest)


def _order_create(
    merged: dict[str, int],
    email: str,
    owner_key: str,
    checkout_token: str | None,
    idempotency_key: str | None,
    digest: str,
) -> OrderCreation:
    with transaction.atomic(durable=True):
        key_row = None
        if idempotency_key is not None:
            _purge_expired_key(idempotency_key)
            try:
                with transaction.atomic():
                    key_row = IdempotencyKey.objects.create(
                        key=idempotency_key, request_digest=digest
                    )
            except IntegrityError:
                raise _Replay from None
        if (
            checkout_token is not None
            and Order.objects.filter(checkout_token=checkout_token).exists()
        ):
            raise _Replay

        products = {p.sku: p for p in Product.objects.filter(sku__in=merged, is_active=True)}
        unknown = sorted(set(merged) - set(products))
        if unknown:
            raise ApplicationError("unknown_sku", f"Unknown product: {', '.join(unknown)}.")
        currencies = {p.currency for p in products.values()}
        if len(currencies) != 1:
            raise ApplicationError("mixed_currency", "All items of an order must share a currency.")

        # Conditional decrements in id order: no oversell, no deadlock between two carts.
        for product in sorted(products.values(), key=lambda p: p.pk):
            quantity = merged[product.sku]
            reserved = Product.objects.filter(pk=product.pk, stock__gte=quantity).update(
                stock=F("stock") - quantity
            )
            if not reserved:
                raise Conflict("out_of_stock", f"Not enough stock for {product.name}.")

        total = sum(products[sku].price_amount * qty for sku, qty in merged.items())
        try:
            with transaction.atomic():
                order = Order.objects.create(
                    email=email,
                    total_amount=total,
                    currency=currencies.pop(),
                    owner_key=owner_key,
                    checkout_token=checkout_token,
                    expires_at=timezone.now() + dt.timedelta(seconds=settings.ORDER_TTL_SECONDS),
                )
        except IntegrityError:
            raise _Replay from None
        OrderLine.objects.bulk_create(
            OrderLine(
                order=order,
                product=products[sku],
                sku=sku,
                name=products[sku].name,
                unit_price=products[sku].price_amount,
                quantity=qty,
                line_total=products[sku].price_amount * qty,
            )
            for sku, qty in sorted(merged.items())
        )
        if key_row is not None:
            key_row.order = order
            key_row.save(update_fields=["order"])
    logger.info("order created %s total=%s %s", order.public_id, order.total_amount, order.currency)
    return OrderCreation(order=order, created=True)


def _purge_expired_key(key: str) -> None:
    cutoff = timezone.now() - dt.timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    IdempotencyKey.objects.filter(key=key, created_at__lt=cutoff).delete()


def _order_replay(
    checkout_token: str | None, idempotency_key: str | None, digest: str
) -> OrderCreation:
    if idempotency_key is not None:
        row = IdempotencyKey.objects.select_related("order").filter(key=idempotency_key).first()
        if row is None or row.order is None:
            # The first request rolled back after we saw its key: nothing was made, try again.
            raise Conflict(
                "idempotency_key_in_use", "A request with this key is still in progress."
            )
        if row.request_digest != digest:
            raise ApplicationError(
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request.",
                status=422,
            )
        return OrderCreation(order=row.order, created=False)
    order = Order.objects.filter(checkout_token=checkout_token).first()
    if order is None:
        raise Conflict("checkout_in_progress", "This checkout is still being processed.")
    return OrderCreation(order=order, created=False)


def order_release_stock(*, order: Order) -> None:
    """Give an order's reserved stock back. Caller holds the order row lock in a transaction."""
    orders_release_stock(order_ids=[order.pk])


def orders_release_stock(*, order_ids: Sequence[int]) -> None:
    """Give the reserved stock of many orders back. Caller holds the orders' row locks in a
    transaction. The products are locked in id order first, as every stock writer takes them,
    so this never deadlocks with a checkout reserving stock."""
    if not order_ids:
        return
    product, line = Product._meta.db_table, OrderLine._meta.db_table
    with connection.cursor() as cursor:
        # The lines' sums first (found through their order ids), then the product rows locked.
        cursor.execute(
            f"SELECT p.id, released.quantity FROM {product} AS p"  # noqa: S608 (model tables)
            f" JOIN (SELECT product_id, sum(quantity) AS quantity FROM {line}"
            "       WHERE order_id = ANY(%s::bigint[]) GROUP BY product_id) AS released"
            "   ON released.product_id = p.id"
            " ORDER BY p.id FOR UPDATE OF p",
            [list(order_ids)],
        )
        released = cursor.fetchall()
        cursor.execute(
            f"UPDATE {product} AS p SET stock = p.stock + released.quantity"  # noqa: S608
            " FROM unnest(%s::bigint[], %s::bigint[]) AS released (id, quantity)"
            " WHERE p.id = released.id",
            [[pk for pk, _ in released], [quantity for _, quantity in released]],
        )


def order_reserve_stock(*, order: Order) -> bool:
    """Take an order's stock again (reviving a closed order). Caller holds the order row lock."""
    for line in order.lines.order_by("product_id"):
        if not Product.objects.filter(pk=line.product_id, stock__gte=line.quantity).update(
            stock=F("stock") - line.quantity
        ):
            return False
    return True


def outbox_enqueue(*, topic: str, payload: dict[str, Any]) -> OutboxEvent:
    """Record a downstream notification, inside the transaction that made the change; a worker
    is asked to deliver it once that commits (``shop.outbox.outbox_kick``)."""
    event = OutboxEvent.objects.create(topic=topic, payload=payload, next_attempt_at=timezone.now())
    if settings.TASK_FOLLOW_UPS_ENABLED:  # else the outbox sweep delivers it
        transaction.on_commit(outbox_kick)
    return event


def outbox_enqueue_many(*, topic: str, payloads: Sequence[dict[str, Any]]) -> list[OutboxEvent]:
    """``outbox_enqueue`` for many events of one topic: one INSERT, one kick after the commit."""
    now = timezone.now()
    events = OutboxEvent.objects.bulk_create(
        OutboxEvent(topic=topic, payload=payload, next_attempt_at=now) for payload in payloads
    )
    if events and settings.TASK_FOLLOW_UPS_ENABLED:
        transaction.on_commit(outbox_kick)
    return events
