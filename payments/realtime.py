"""Push order changes to open pages: a Redis pub/sub message per change, read by the SSE view."""

from __future__ import annotations

import logging

from django.db import transaction
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from payments.locks import redis_key

logger = logging.getLogger(__name__)


def order_channel(order_public_id: str) -> str:
    return redis_key("order-updates", order_public_id)


def publish_order_update(order_public_id: str) -> None:
    """Tell listeners the order changed; sent after commit so a listener re-reads the new state."""

    def _publish() -> None:
        try:
            get_redis_connection("default").publish(order_channel(order_public_id), "changed")
        except RedisError:
            logger.info("order update not pushed (Redis unavailable); pages still poll")

    transaction.on_commit(_publish)
