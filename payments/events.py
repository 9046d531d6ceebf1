"""Gateway events: everything a gateway told us, stored raw and committed on its own before
anything acts on it (the decision service reads none of it; ops and reconciliation do)."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from payments.gateways.base import CloseResult, PrepayResult, TradeStatus
from payments.models import GatewayEvent, PaymentAttempt


def event_record(
    *,
    channel: str,
    kind: str,
    out_trade_no: str = "",
    attempt: PaymentAttempt | None = None,
    outcome: str = "",
    verified: bool = True,
    rejection: str = "",
    headers: dict[str, Any] | None = None,
    body: str = "",
    payload: str = "",
    event_id: str | None = None,
) -> GatewayEvent:
    """Store what a gateway said, committed on its own before anything acts on it.

    An unverified event can come from anyone: only a bounded prefix of its body is kept (and
    ``payments.retention`` purges it later)."""
    if not verified:
        body = body[: settings.UNVERIFIED_EVENT_BODY_CHARS]
    body, payload = _storable(body), _storable(payload)
    event = GatewayEvent(
        channel=channel,
        kind=kind,
        out_trade_no=out_trade_no[:64],
        attempt=attempt,
        outcome=outcome,
        verified=verified,
        rejection=rejection[:200],
        headers=headers or {},
        body=body,
        payload=payload,
        event_id=event_id,
    )
    if event_id is None:
        event.save()
        return event
    return _event_upsert(event)


# One round trip for the hot path of duplicate storms: insert the first copy of a notification,
# or count a re-delivery of it and keep the first copy; either way return its id and whether it
# was already applied.
_EVENT_UPSERT = """
INSERT INTO payments_gatewayevent
    (channel, kind, event_id, out_trade_no, attempt_id, outcome, verified, rejection, headers,
     body, payload, deliveries, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 1, %s)
ON CONFLICT (channel, event_id) WHERE event_id IS NOT NULL
DO UPDATE SET deliveries = payments_gatewayevent.deliveries + 1
RETURNING id, processed_at, deliveries
"""


def _event_upsert(event: GatewayEvent) -> GatewayEvent:
    event.created_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _EVENT_UPSERT,
            [
                event.channel,
                event.kind,
                event.event_id,
                event.out_trade_no,
                event.attempt_id,
                event.outcome,
                event.verified,
                event.rejection,
                json.dumps(event.headers),
                event.body,
                event.payload,
                event.created_at,
            ],
        )
        event.pk, event.processed_at, event.deliveries = cursor.fetchone()
    event._state.adding = False
    return event


def _storable(text: str) -> str:
    # PostgreSQL text cannot hold NUL; a hostile body must still be stored, not crash us.
    return text.replace("\x00", "\ufffd")


def event_record_answer(
    attempt: PaymentAttempt, kind: str, answer: TradeStatus | CloseResult | PrepayResult
) -> None:
    """Keep what the gateway answered about this attempt, whatever it was."""
    event_record(
        channel=attempt.channel,
        kind=kind,
        out_trade_no=attempt.out_trade_no,
        attempt=attempt,
        outcome=answer.outcome,
        body=answer.raw[:20000],
        rejection=answer.error,
    )
