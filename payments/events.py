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
    return _event_upsert(event)[0]


# One round trip for the hot path of callbacks and duplicate storms: insert the first copy of a
# notification — resolving the attempt it is about by (channel, out_trade_no) when asked — or
# count a re-delivery of it and keep the first copy; either way return its id, whether it was
# already applied, its attempt and that attempt's order.
_EVENT_UPSERT = """
INSERT INTO payments_gatewayevent
    (channel, kind, event_id, out_trade_no, attempt_id, outcome, verified, rejection, headers,
     body, payload, deliveries, created_at)
SELECT %(channel)s, %(kind)s, %(event_id)s, %(out_trade_no)s, COALESCE(%(attempt_id)s, found.id),
    %(outcome)s, %(verified)s, %(rejection)s, %(headers)s, %(body)s, %(payload)s, 1, %(created_at)s
FROM (SELECT 1) AS one
LEFT JOIN payments_paymentattempt AS found
    ON %(resolve)s AND found.channel = %(channel)s AND found.out_trade_no = %(out_trade_no)s
ON CONFLICT (channel, event_id) WHERE event_id IS NOT NULL
DO UPDATE SET deliveries = payments_gatewayevent.deliveries + 1,
    attempt_id = COALESCE(payments_gatewayevent.attempt_id, EXCLUDED.attempt_id)
RETURNING id, processed_at, deliveries, attempt_id,
    (SELECT order_id FROM payments_paymentattempt WHERE id = attempt_id)
"""


def _event_upsert(
    event: GatewayEvent, *, resolve_attempt: bool = False
) -> tuple[GatewayEvent, int | None]:
    event.created_at = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _EVENT_UPSERT,
            {
                "channel": event.channel,
                "kind": event.kind,
                "event_id": event.event_id,
                "out_trade_no": event.out_trade_no,
                "attempt_id": event.attempt_id,
                "outcome": event.outcome,
                "verified": event.verified,
                "rejection": event.rejection,
                "headers": json.dumps(event.headers),
                "body": event.body,
                "payload": event.payload,
                "created_at": event.created_at,
                "resolve": resolve_attempt,
            },
        )
        event.pk, event.processed_at, event.deliveries, event.attempt_id, order_id = (
            cursor.fetchone()
        )
    event._state.adding = False
    return event, order_id


def notification_record(
    *,
    channel: str,
    event_id: str | None,
    out_trade_no: str,
    outcome: str,
    headers: dict[str, Any],
    body: str,
    payload: str,
) -> tuple[GatewayEvent, int | None]:
    """Store a verified notification (committed on its own, before anything acts on it) and
    find the attempt it is about in the same statement. Returns the event — its ``attempt_id``
    set if the trade is ours, ``processed_at`` set if an earlier delivery was already applied —
    and the attempt's order id."""
    event = GatewayEvent(
        channel=channel,
        kind=GatewayEvent.Kind.NOTIFICATION,
        out_trade_no=out_trade_no[:64],
        outcome=outcome,
        verified=True,
        headers=headers,
        body=_storable(body),
        payload=_storable(payload),
        event_id=event_id,
    )
    return _event_upsert(event, resolve_attempt=True)


def event_mark_processed(event_pk: int) -> None:
    """The event was applied (inside the transaction that applied it, where there is one)."""
    GatewayEvent.objects.filter(pk=event_pk).update(processed_at=timezone.now())


def event_mark_rejected(event_pk: int, code: str) -> None:
    GatewayEvent.objects.filter(pk=event_pk).update(verified=False, rejection=code)


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
