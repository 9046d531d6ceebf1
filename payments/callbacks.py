"""Gateway notifications: verify, store, then decide under the same locks as everything else."""

from __future__ import annotations

import logging

from django.conf import settings

from orders.locks import OrderBusy, order_lock
from payments.decision import Decision, attempt_apply_trade_status
from payments.events import (
    event_mark_processed,
    event_mark_rejected,
    event_record,
    notification_record,
)
from payments.gateways.base import Acknowledgement, NotificationRejected
from payments.gateways.registry import get_gateway
from refunds.services import refund_apply_result
from shop import logs, metrics

logger = logging.getLogger(__name__)

# Headers worth keeping with an event; never the merchant's own secrets.
KEPT_HEADERS = (
    "Content-Type",
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Serial",
    "Wechatpay-Signature-Type",
    "User-Agent",
)


def _reject(channel: str, code: str) -> Acknowledgement:
    """The gateway's failure answer for input we refuse: 4xx for WeChat, ``fail`` for Alipay."""
    ack = get_gateway(channel).acknowledgement(ok=False, message=code)
    if channel == "wechat":
        status = 401 if code in {"bad_signature", "stale_timestamp"} else 400
        return Acknowledgement(status=status, body=ack.body, content_type=ack.content_type)
    return ack


def notification_handle(
    *, channel: str, headers: dict[str, str], body: bytes, content_type: str
) -> Acknowledgement:
    gateway = get_gateway(channel)
    kept = {k: v for k, v in headers.items() if k in KEPT_HEADERS}
    text = body[: settings.DATA_UPLOAD_MAX_MEMORY_SIZE].decode("utf-8", errors="replace")
    if len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        event_record(
            channel=channel,
            kind="notification",
            verified=False,
            rejection="too_large",
            headers=kept,
            body=text[:2000],
        )
        metrics.callback_received(channel=channel, outcome="rejected", reason="too_large")
        return _reject(channel, "too_large")
    try:
        notification = gateway.parse_notification(
            headers=headers, body=body, content_type=content_type
        )
    except NotificationRejected as rejected:
        logger.warning("%s notification rejected: %s", channel, rejected.code)
        event_record(
            channel=channel,
            kind="notification",
            verified=False,
            rejection=rejected.code,
            headers=kept,
            body=text,
        )
        metrics.callback_received(channel=channel, outcome="rejected", reason=rejected.code)
        return _reject(channel, rejected.code)

    out_trade_no = (
        notification.trade.out_trade_no
        if notification.trade
        else notification.refund.out_trade_no
        if notification.refund
        else ""
    )
    logs.bind(out_trade_no=out_trade_no)
    event, order_id = notification_record(
        channel=channel,
        event_id=notification.event_id or None,
        out_trade_no=out_trade_no,
        headers=kept,
        body=text,
        payload=notification.raw,
        outcome=(
            notification.trade.outcome
            if notification.trade
            else notification.refund.outcome
            if notification.refund
            else ""
        ),
    )
    if event.processed_at is not None:
        metrics.callback_received(channel=channel, outcome="duplicate")
        return gateway.acknowledgement(ok=True)  # a re-delivery of something already applied
    cause = f"notification:{event.event_id or event.pk}"

    if notification.kind == "refund" and notification.refund is not None:
        result = notification.refund
        refund_apply_result(
            out_refund_no=result.out_refund_no,
            outcome=result.outcome,
            gateway_refund_id=result.gateway_refund_id,
            error=result.error,
            amount=result.amount,
            cause=cause,
        )
        metrics.callback_received(channel=channel, outcome="verified", reason="refund")
        event_mark_processed(event.pk)
        return gateway.acknowledgement(ok=True)

    trade = notification.trade
    if trade is None:
        metrics.callback_received(channel=channel, outcome="rejected", reason="malformed")
        return _reject(channel, "malformed")
    if event.attempt_id is None or order_id is None:
        event_mark_rejected(event.pk, "unknown_trade")
        metrics.callback_received(channel=channel, outcome="rejected", reason="unknown_trade")
        return _reject(channel, "unknown_trade")
    try:
        with order_lock(order_id):
            # Applied, and the event marked processed (or rejected), in one transaction.
            decision = attempt_apply_trade_status(
                attempt_id=event.attempt_id,
                order_id=order_id,
                status=trade,
                source=cause,
                applying_event=event.pk,
            )
    except OrderBusy:
        # Not now: the gateway's retry brings it back, and polling covers us meanwhile.
        metrics.callback_received(channel=channel, outcome="busy")
        return gateway.acknowledgement(ok=False, message="busy")
    if decision is Decision.MISMATCH:
        # The one integrity policy (payments.decision): the attempt is set aside for ops;
        # the notification is refused, as any answer about money that is not ours.
        metrics.callback_received(channel=channel, outcome="rejected", reason="amount_mismatch")
        return _reject(channel, "amount_mismatch")
    metrics.callback_received(channel=channel, outcome="verified", reason="trade")
    return gateway.acknowledgement(ok=True)
