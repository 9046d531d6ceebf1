"""Push order changes to open pages: a Redis pub/sub message per change, read by the SSE view."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence

from django.conf import settings
from django.db import transaction
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from orders.locks import redis_key

logger = logging.getLogger(__name__)


def order_channel(order_public_id: str) -> str:
    return redis_key("order-updates", order_public_id)


def publish_order_update(order_public_id: str) -> None:
    """Tell listeners the order changed; sent after commit so a listener re-reads the new state."""
    publish_order_updates([order_public_id])


def publish_order_updates(order_public_ids: Sequence[str]) -> None:
    """``publish_order_update`` for many orders: sent after commit, in one round trip."""
    channels = [order_channel(public_id) for public_id in order_public_ids]
    if not channels:
        return

    def _publish() -> None:
        try:
            pipeline = get_redis_connection("default").pipeline(transaction=False)
            for channel in channels:
                pipeline.publish(channel, "changed")
            pipeline.execute()
        except RedisError:
            logger.info("order updates not pushed (Redis unavailable); pages still poll")

    transaction.on_commit(_publish)


# --- the event stream an open order page listens to ------------------------------------------

# A held stream occupies a web thread for its whole life, so only this many are held per web
# process; past that a stream answers once and ends, and the page's EventSource reconnects
# after ``retry`` (it polls). Hundreds of open pages then cost no thread each, and the first
# few still get pushed updates at once.
_STREAM_SLOTS = (
    threading.BoundedSemaphore(settings.EVENT_STREAMS_PER_PROCESS)
    if settings.EVENT_STREAMS_PER_PROCESS > 0
    else None
)
STREAM_SECONDS = 25
RETRY_MS = 3000


class _HeldStream:
    """The SSE body of a held stream; gives its slot back when the response is closed (Django
    calls ``close`` whether or not the body was ever iterated)."""

    def __init__(self, public_id: str, current: Callable[[], str]) -> None:
        self.public_id = public_id
        self.current = current
        self.released = False
        self.body = self._stream()

    def __iter__(self) -> Iterator[str]:
        return self.body

    def close(self) -> None:
        self.body.close()
        if not self.released and _STREAM_SLOTS is not None:
            self.released = True
            _STREAM_SLOTS.release()

    def _stream(self) -> Generator[str, None, None]:
        pubsub = None
        try:
            pubsub = get_redis_connection("default").pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(order_channel(self.public_id))
        except RedisError:
            pubsub = None
        yield f"retry: {RETRY_MS}\n\n"
        yield self.current()
        deadline = time.monotonic() + STREAM_SECONDS
        try:
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=1.0) if pubsub else None
                if pubsub is None:
                    time.sleep(1.0)
                yield self.current() if message else ": keep-alive\n\n"
        finally:
            if pubsub is not None:
                pubsub.close()


def order_event_stream(public_id: str, current: Callable[[], str]) -> HttpResponseBase:
    """Server-Sent Events for one order: ``current()`` renders its ``status`` event. Held open
    (pushing each change) while a slot is free, else answered once at once."""
    if _STREAM_SLOTS is not None and _STREAM_SLOTS.acquire(blocking=False):
        response: HttpResponseBase = StreamingHttpResponse(
            _HeldStream(public_id, current), content_type="text/event-stream"
        )
        response["X-Accel-Buffering"] = "no"
    else:
        response = HttpResponse(
            f"retry: {RETRY_MS}\n\n{current()}", content_type="text/event-stream"
        )
    response["Cache-Control"] = "no-store"
    return response
