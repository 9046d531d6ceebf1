"""Seed 001's short content-hash window for API clients that send no Idempotency-Key.

An identical order (same body, same client address) within ``ORDER_DEDUPE_WINDOW_SECONDS``
returns the order the first request made. Redis holds the window only: if Redis is down, the
order is created (the database stays correct; only the convenience is lost).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from orders.models import Order
from payments.locks import redis_key
from shop.errors import Conflict

logger = logging.getLogger(__name__)

PENDING = b"pending"


def with_content_dedupe(
    digest: str, create: Callable[[], Order]
) -> tuple[Order, bool]:
    """Run ``create`` unless an identical request made an order within the window.

    Returns (order, created).
    """
    window = settings.ORDER_DEDUPE_WINDOW_SECONDS
    key = redis_key("dedupe", "order", digest)
    try:
        client = get_redis_connection("default")
        claimed = client.set(key, PENDING, nx=True, ex=window)
    except RedisError:
        logger.warning("dedupe window unavailable (Redis down)")
        return create(), True
    if claimed:
        try:
            order = create()
        except Exception:
            _forget(client, key)
            raise
        try:
            client.set(key, order.public_id.encode(), xx=True, keepttl=True)
        except RedisError:
            pass
        return order, True
    # An identical request is in flight or done: wait briefly for its order.
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        try:
            value = client.get(key)
        except RedisError:
            break
        if value is None:
            return create(), True  # the first one failed and let go
        if value != PENDING:
            order = Order.objects.filter(public_id=value.decode()).first()
            if order is not None:
                return order, False
        time.sleep(0.05)
    raise Conflict("duplicate_in_flight", "An identical order is being created. Retry shortly.")


def _forget(client: object, key: str) -> None:
    try:
        client.delete(key)  # type: ignore[attr-defined]
    except RedisError:
        pass
