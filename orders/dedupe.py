"""Seed 001's short content-hash window for API clients that send no Idempotency-Key.

An identical order (same body, same client address) within ``ORDER_DEDUPE_WINDOW_SECONDS``
returns the order the first request made. Redis holds the window only: if Redis is down, the
order is created (the database stays correct; only the convenience is lost).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from orders.locks import redis_key
from orders.models import Order
from shop.errors import Conflict

logger = logging.getLogger(__name__)

PENDING = b"pending"


def with_content_dedupe(digest: str, create: Callable[[], Order]) -> tuple[Order, bool]:
    """Run ``create`` unless an identical request made an order within the window.

    Returns (order, created).
    """
    key = redis_key("dedupe", "order", digest)
    deadline = time.monotonic() + 3.0
    while True:
        try:
            client = get_redis_connection("default")
            claimed = client.set(key, PENDING, nx=True, ex=settings.ORDER_DEDUPE_WINDOW_SECONDS)
            value = None if claimed else client.get(key)
        except RedisError:
            logger.warning("dedupe window unavailable (Redis down)")
            return create(), True
        if claimed:
            try:
                order = create()
            except Exception:
                with contextlib.suppress(RedisError):
                    client.delete(key)
                raise
            with contextlib.suppress(RedisError):
                client.set(key, order.public_id.encode(), xx=True, keepttl=True)
            return order, True
        if value is not None and value != PENDING:
            earlier = Order.objects.filter(public_id=value.decode()).first()
            if earlier is not None:
                return earlier, False
        # An identical request is in flight (or just gave up): wait briefly, then look again.
        if time.monotonic() >= deadline:
            raise Conflict(
                "duplicate_in_flight", "An identical order is being created. Retry shortly."
            )
        time.sleep(0.05)
