"""The outbox: written with the change, delivered at least once with a stable id and an HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from shop.models import OutboxEvent
from shop.outbox import order_event, outbox_deliver

pytestmark = pytest.mark.django_db(transaction=True)


class Receiver:
    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(500 if len(receiver.received) <= receiver.fail_first else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def test_webhook_is_signed_retried_and_keeps_its_event_id(settings) -> None:
    receiver = Receiver(fail_first=1)
    settings.OUTBOX_WEBHOOK_URL = receiver.url
    seen: list[str] = []
    order_event.connect(lambda **kw: seen.append(kw["event_id"]), weak=False, dispatch_uid="t")
    try:
        event = OutboxEvent.objects.create(
            topic="order.paid", payload={"order_id": "ord_x"}, next_attempt_at=timezone.now()
        )
        assert outbox_deliver(event_pk=event.pk) is False  # receiver answered 500
        event.refresh_from_db()
        assert event.status == "pending" and event.deliveries == 1 and "500" in event.last_error
        OutboxEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
        assert outbox_deliver(event_pk=event.pk) is True
        assert (
            outbox_deliver(event_pk=event.pk) is False
        )  # delivered: never sent again by a late run
    finally:
        order_event.disconnect(dispatch_uid="t")
        receiver.server.shutdown()
    event.refresh_from_db()
    assert event.status == "delivered"
    ids = {headers["Oncepay-Event-Id"] for headers, _ in receiver.received}
    assert ids == {str(event.event_id)} and len(receiver.received) == 2
    headers, body = receiver.received[-1]
    stamp, mac = (part.split("=", 1)[1] for part in headers["Oncepay-Signature"].split(","))
    expected = hmac.new(
        settings.OUTBOX_WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(mac, expected)
    assert json.loads(body) == {
        "id": str(event.event_id),
        "topic": "order.paid",
        "data": {"order_id": "ord_x"},
    }
    assert seen == [str(event.event_id)] * 2


def test_undeliverable_events_end_dead_and_stay_visible(settings) -> None:
    settings.OUTBOX_WEBHOOK_URL = "http://127.0.0.1:1/nowhere"
    event = OutboxEvent.objects.create(
        topic="order.closed", payload={}, next_attempt_at=timezone.now()
    )
    for _ in range(12):
        OutboxEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now())
        outbox_deliver(event_pk=event.pk)
    event.refresh_from_db()
    assert event.status == "dead" and event.deliveries == 12 and event.last_error


def _queued_messages() -> int:
    from django.conf import settings as django_settings
    from django_redis import get_redis_connection

    queue = f"{django_settings.REDIS_KEY_PREFIX}:celery:{django_settings.CELERY_TASK_DEFAULT_QUEUE}"
    return int(get_redis_connection("default").llen(queue))


def test_events_committed_together_share_one_delivery_task(settings) -> None:
    """A burst of paid orders costs the web one broker message, not one per event; the task
    clears its kick before it looks, so an event committed after that gets a task of its own."""
    from django.db import transaction

    from orders.services import outbox_enqueue
    from shop.outbox import outbox_deliver_pending

    receiver = Receiver(fail_first=0)
    settings.OUTBOX_WEBHOOK_URL = receiver.url
    try:
        before = _queued_messages()
        for n in range(5):
            with transaction.atomic():
                outbox_enqueue(topic="order.paid", payload={"order_id": f"ord_{n}"})
        assert _queued_messages() == before + 1  # no worker runs here: the one task waits

        assert outbox_deliver_pending() == 5  # what the task does: every pending event, once
        assert sorted(json.loads(body)["data"]["order_id"] for _, body in receiver.received) == [
            f"ord_{n}" for n in range(5)
        ]
        with transaction.atomic():
            outbox_enqueue(topic="order.paid", payload={"order_id": "ord_late"})
        assert _queued_messages() == before + 2  # kicked again: it does not wait for the sweep
        assert outbox_deliver_pending() == 1
    finally:
        receiver.server.shutdown()
    assert OutboxEvent.objects.exclude(status="delivered").count() == 0


def test_a_burst_larger_than_a_batch_is_delivered_without_the_beat(settings) -> None:
    """The kicked task delivers one batch and, finding it full, kicks again: with no beat
    running, every event of a burst bigger than a batch still gets delivered."""
    from django.db import transaction

    from orders.services import outbox_enqueue
    from shop.outbox import outbox_deliver_pending

    settings.SWEEP_BATCH_SIZE = 3
    settings.OUTBOX_WEBHOOK_URL = ""
    before = _queued_messages()
    with transaction.atomic():
        for n in range(7):
            outbox_enqueue(topic="order.paid", payload={"order_id": f"ord_{n}"})
    assert _queued_messages() == before + 1
    rounds = 0
    while _queued_messages() > before:  # play the worker: run each task that was sent
        from django_redis import get_redis_connection

        queue = f"{settings.REDIS_KEY_PREFIX}:celery:{settings.CELERY_TASK_DEFAULT_QUEUE}"
        get_redis_connection("default").rpop(queue)
        outbox_deliver_pending()
        rounds += 1
        assert rounds <= 5
    assert OutboxEvent.objects.filter(status="pending").count() == 0
    assert rounds == 3  # 3 + 3 + 1


def test_each_delivery_in_a_batch_logs_its_own_order(settings, caplog) -> None:
    """One run delivers many orders' events: a line about one never carries another's trade."""
    import logging

    from django.db import transaction

    from orders.services import outbox_enqueue
    from shop import logs
    from shop.outbox import outbox_deliver_pending

    settings.OUTBOX_WEBHOOK_URL = "http://127.0.0.1:1/nowhere"  # each failure logs a warning
    with transaction.atomic():
        outbox_enqueue(topic="order.paid", payload={"order_id": "ord_a", "out_trade_no": "TA"})
        outbox_enqueue(topic="order.closed", payload={"order_id": "ord_b"})
    with caplog.at_level(logging.WARNING, logger="shop.outbox"):
        logs.bind(request_id="task-1")
        outbox_deliver_pending()
    bound = [
        (r.order_id, r.out_trade_no, r.request_id)  # type: ignore[attr-defined]
        for r in caplog.records
        if "delivery" in r.getMessage()
    ]
    assert sorted(bound) == [("ord_a", "TA", "task-1"), ("ord_b", "", "task-1")]
    logs.clear()
