"""The per-order Redis lock: it makes contention cheap; the database makes it correct.

Every entry point that may change an order's payment state (apply-pay, callbacks, polls,
expiry, admin actions) takes this one lock key first, then the order row lock. With
``PAYMENT_LOCK_ENABLED=0``, or when Redis is unreachable, the lock is skipped and the row
locks, conditional updates and unique constraints still keep every invariant.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django_redis import get_redis_connection
from redis.exceptions import LockError, RedisError

from shop.errors import ApplicationError

logger = logging.getLogger(__name__)


class OrderBusy(ApplicationError):
    def __init__(self) -> None:
        super().__init__(
            "payment_in_progress",
            "A payment for this order is being processed. Please try again in a moment.",
            status=503,
        )


def redis_key(*parts: object) -> str:
    return ":".join([settings.REDIS_KEY_PREFIX, *map(str, parts)])


@contextmanager
def order_lock(order_id: int, *, wait: float | None = None) -> Iterator[None]:
    """Hold the order's lock, or raise ``OrderBusy`` if it cannot be had within ``wait`` seconds."""
    if not settings.PAYMENT_LOCK_ENABLED:
        yield
        return
    try:
        client = get_redis_connection("default")
        lock = client.lock(
            redis_key("lock", "order", order_id),
            timeout=settings.PAYMENT_LOCK_TTL_SECONDS,
            blocking_timeout=settings.PAYMENT_LOCK_WAIT_SECONDS if wait is None else wait,
        )
        acquired = lock.acquire()
    except RedisError:
        logger.warning("order lock unavailable (Redis down); relying on row locks", exc_info=True)
        yield
        return
    if not acquired:
        raise OrderBusy()
    try:
        yield
    finally:
        try:
            lock.release()
        except (LockError, RedisError):
            # Expired mid-flight (TTL shorter than the work) or Redis restarted: harmless,
            # the database kept the work correct.
            logger.info("order lock %s was lost before release", order_id)
