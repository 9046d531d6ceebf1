"""Delivering the transactional outbox: at least once, with a stable event id, HMAC-signed."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time

import requests
from django.conf import settings
from django.db import connection
from django.dispatch import Signal
from django.utils import timezone

from shop import logs, metrics
from shop.models import OutboxEvent

logger = logging.getLogger(__name__)

# Sent in-process for every delivered event: kwargs ``event_id``, ``topic``, ``payload``.
# Receivers must be idempotent: delivery is at least once.
order_event = Signal()

MAX_DELIVERIES = 12


def outbox_signature(body: bytes, timestamp: int) -> str:
    mac = hmac.new(
        settings.OUTBOX_WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    )
    return f"t={timestamp},v1={mac.hexdigest()}"


# Claim due pending events and lease them in one statement: rows another run holds are
# skipped, and a claimed row is not due again for a minute, so parallel runs never both send.
_CLAIM_DUE = f"""
UPDATE {OutboxEvent._meta.db_table} SET next_attempt_at = %(lease_until)s,
    deliveries = deliveries + 1
WHERE id IN (
    SELECT id FROM {OutboxEvent._meta.db_table}
    WHERE status = 'pending' AND next_attempt_at <= %(now)s
        AND (%(pk)s::bigint IS NULL OR id = %(pk)s)
    ORDER BY next_attempt_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""  # noqa: S608 (table name from the model)
LEASE_SECONDS = 60


def _claim_due(*, limit: int, pk: int | None = None) -> list[OutboxEvent]:
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_DUE,
            {"lease_until": now + dt.timedelta(seconds=LEASE_SECONDS), "now": now, "pk": pk,
             "limit": limit},
        )  # fmt: skip
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return []
    return list(OutboxEvent.objects.filter(pk__in=ids).order_by("pk"))  # oldest first


def outbox_deliver(*, event_pk: int) -> bool:
    """Deliver one event if it is due. Claimed with a lease so parallel runs don't both send."""
    claimed = _claim_due(limit=1, pk=event_pk)
    return bool(claimed) and _send(claimed[0])


def _send(event: OutboxEvent) -> bool:
    """Send one claimed event to the in-process receivers and the webhook; record the result.
    Its log lines name its own order and trade (one run sends many orders' events)."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    with logs.scope(
        request_id=logs.current()["request_id"],
        order_id=payload.get("order_id", ""),
        out_trade_no=payload.get("out_trade_no", ""),
    ):
        return _send_in_scope(event)


def _send_in_scope(event: OutboxEvent) -> bool:
    body = json.dumps(
        {"id": str(event.event_id), "topic": event.topic, "data": event.payload},
        separators=(",", ":"),
    ).encode()
    error = ""
    try:
        order_event.send(
            sender=OutboxEvent,
            event_id=str(event.event_id),
            topic=event.topic,
            payload=event.payload,
        )
        if settings.OUTBOX_WEBHOOK_URL:
            response = requests.post(
                settings.OUTBOX_WEBHOOK_URL,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "Oncepay-Event-Id": str(event.event_id),
                    "Oncepay-Signature": outbox_signature(body, int(time.time())),
                },
                timeout=(settings.GATEWAY_CONNECT_TIMEOUT, settings.GATEWAY_READ_TIMEOUT),
            )
            if response.status_code >= 300:
                error = f"webhook answered {response.status_code}"
    except Exception as exc:  # any receiver failure is retried, never lost
        error = f"{type(exc).__name__}: {exc}"[:500]
    if not error:
        OutboxEvent.objects.filter(pk=event.pk).update(
            status=OutboxEvent.Status.DELIVERED, delivered_at=timezone.now(), last_error=""
        )
        metrics.outbox_delivery(outcome="delivered")
        return True
    dead = event.deliveries >= MAX_DELIVERIES
    metrics.outbox_delivery(outcome="dead" if dead else "failed")
    OutboxEvent.objects.filter(pk=event.pk).update(
        status=OutboxEvent.Status.DEAD if dead else OutboxEvent.Status.PENDING,
        last_error=error,
        next_attempt_at=timezone.now() + dt.timedelta(seconds=min(2**event.deliveries * 5, 3600)),
    )
    logger.warning(
        "outbox event %s delivery %s failed: %s", event.event_id, event.deliveries, error
    )
    return False


def outbox_sweep() -> int:
    """Deliver the due pending events, oldest first (one batch). Returns how many were sent."""
    return _deliver_due_batch()[1]


def _deliver_due_batch() -> tuple[int, int]:
    """Claim up to ``SWEEP_BATCH_SIZE`` due events and send them. Returns (claimed, delivered);
    parallel runs claim disjoint events."""
    claimed = _claim_due(limit=settings.SWEEP_BATCH_SIZE)
    return len(claimed), sum(1 for event in claimed if _send(event))


# A kick is pending while this key exists; it expires by itself, so a kick whose task was lost
# (broker down, worker killed) holds the next ones back for a few seconds at most.
OUTBOX_KICK_SECONDS = 5
# The kicked task starts this long after the first event of a burst, so the events committed
# meanwhile are delivered by the same task: downstream hears of a payment a fifth of a second
# later, and a busy shop sends one broker message per burst instead of one per payment.
OUTBOX_KICK_DELAY_SECONDS = 0.2
OUTBOX_DELIVER_PENDING_TASK = "shop.tasks.outbox_deliver_pending_task"


def _kick_key() -> str:
    return f"{settings.REDIS_KEY_PREFIX}:outbox:kick"


def outbox_kick() -> None:
    """Ask a worker to deliver what is pending now (called after the commit that wrote an
    event). Events committed close together share one task instead of a broker message each:
    the first sets a short-lived flag and sends the task, the others see the flag and leave it.
    The task clears the flag *before* it looks for pending events, so an event committed after
    that look sends a task of its own, and none waits for the beat's outbox sweep. If Redis or
    the broker is down, that sweep delivers."""
    from celery import current_app
    from django_redis import get_redis_connection

    try:
        client = get_redis_connection("default")
        if client.set(_kick_key(), 1, nx=True, ex=OUTBOX_KICK_SECONDS):
            current_app.send_task(OUTBOX_DELIVER_PENDING_TASK, countdown=OUTBOX_KICK_DELAY_SECONDS)
    except Exception:  # Redis or broker down: the outbox sweep delivers it later
        logger.warning("outbox delivery deferred to the sweep", exc_info=True)


def outbox_deliver_pending() -> int:
    """The kicked delivery: clear the kick, then deliver a batch. A full batch means more may
    be due, so it kicks again — judged by what it found, not by what it delivered itself:
    two kicked runs at once share a batch, and neither must leave the rest to the beat."""
    from django_redis import get_redis_connection

    try:
        get_redis_connection("default").delete(_kick_key())
    except Exception:
        logger.warning("outbox kick not cleared (Redis down); the sweep delivers", exc_info=True)
    found, delivered = _deliver_due_batch()
    if found >= settings.SWEEP_BATCH_SIZE:
        outbox_kick()
    return delivered
