"""An in-process gateway double for fast tests of the services: one ledger of trades for both
channels, the ground truth of what was captured and refunded, with switches for what a real
gateway does wrong (silence, ignored closes, rejected or hung prepays).

Configured like a real adapter: ``PAYMENT_GATEWAYS[channel]["BACKEND"] =
"tests.support.gateway_double.build"``. Every invariant scenario also runs against the sandbox
over HTTP; this double only makes the stateful property tests fast.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from payments.gateways.base import (
    Acknowledgement,
    CloseOutcome,
    CloseResult,
    Notification,
    NotificationRejected,
    PaymentAction,
    PrepayOutcome,
    PrepayRequest,
    PrepayResult,
    RefundOutcome,
    RefundRequest,
    RefundResult,
    ReturnInfo,
    StatementLine,
    TradeOutcome,
    TradeStatus,
)


@dataclass
class GatewayRefund:
    out_refund_no: str
    amount: int
    status: str = "pending"  # pending | succeeded | failed


@dataclass
class Trade:
    channel: str
    out_trade_no: str
    amount: int
    currency: str
    status: str = "open"  # open | paid | closed
    ignores_close: bool = False  # a close answers "closed" but the trade stays payable
    ever_closed: bool = False
    paid_at: dt.datetime | None = None
    # Every answer a query would have given over the trade's life: a stale answer is one of them.
    history: list[TradeOutcome] = field(default_factory=lambda: [TradeOutcome.NOT_PAID])
    refunds: dict[str, GatewayRefund] = field(default_factory=dict)

    @property
    def captured(self) -> int:
        return self.amount if self.status == "paid" else 0

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds.values() if r.status == "succeeded")


@dataclass
class Ledger:
    trades: dict[str, Trade] = field(default_factory=dict)
    silent: bool = False  # queries and closes time out
    next_prepay: str = "created"  # created | rejected | unknown (trade made) | lost (not made)
    ignore_next_close: bool = False

    def reset(self) -> None:
        self.trades.clear()
        self.silent = False
        self.next_prepay = "created"
        self.ignore_next_close = False

    def pay(self, out_trade_no: str, at: dt.datetime) -> bool:
        """The shopper pays at the gateway; False if the trade cannot take payment."""
        trade = self.trades.get(out_trade_no)
        if trade is None or trade.status == "paid":
            return False
        if trade.status == "closed" and not trade.ignores_close:
            return False
        trade.status, trade.paid_at = "paid", at
        trade.history.append(TradeOutcome.PAID)
        return True


LEDGER = Ledger()


class DoubleGateway:
    def __init__(self, channel: str) -> None:
        self.channel = channel

    def prepay(self, request: PrepayRequest) -> PrepayResult:
        mode = LEDGER.next_prepay
        if mode == "rejected":
            return PrepayResult(outcome=PrepayOutcome.REJECTED, error="INVALID_REQUEST")
        LEDGER.trades.setdefault(
            request.out_trade_no,
            Trade(self.channel, request.out_trade_no, request.amount, request.currency),
        )
        if mode == "lost":
            del LEDGER.trades[request.out_trade_no]
            return PrepayResult(outcome=PrepayOutcome.UNKNOWN, error="timeout")
        if mode == "unknown":
            return PrepayResult(outcome=PrepayOutcome.UNKNOWN, error="timeout")
        return PrepayResult(
            outcome=PrepayOutcome.CREATED,
            action=PaymentAction(type="qr", code_url=f"double://{request.out_trade_no}"),
        )

    def query(self, out_trade_no: str) -> TradeStatus:
        if LEDGER.silent:
            return TradeStatus(outcome=TradeOutcome.UNKNOWN, out_trade_no=out_trade_no)
        return trade_status(out_trade_no)

    def close(self, out_trade_no: str) -> CloseResult:
        if LEDGER.silent:
            return CloseResult(outcome=CloseOutcome.UNKNOWN, error="timeout")
        trade = LEDGER.trades.get(out_trade_no)
        if trade is None:
            return CloseResult(outcome=CloseOutcome.CLOSED)
        if trade.status == "paid":
            return CloseResult(outcome=CloseOutcome.PAID)
        if LEDGER.ignore_next_close:
            LEDGER.ignore_next_close = False
            trade.ignores_close = True
        trade.status, trade.ever_closed = "closed", True
        trade.history.append(TradeOutcome.CLOSED)
        return CloseResult(outcome=CloseOutcome.CLOSED)

    def refund(self, request: RefundRequest) -> RefundResult:
        trade = LEDGER.trades.get(request.out_trade_no)
        existing = trade.refunds.get(request.out_refund_no) if trade else None
        if existing is not None:  # the same out_refund_no is the same refund
            return refund_result(trade, existing)  # type: ignore[arg-type]
        committed = (
            sum(r.amount for r in trade.refunds.values() if r.status != "failed") if trade else 0
        )
        if trade is None or trade.status != "paid" or committed + request.amount > trade.amount:
            return RefundResult(
                outcome=RefundOutcome.FAILED,
                out_refund_no=request.out_refund_no,
                error="NOT_ENOUGH",
            )
        refund = GatewayRefund(request.out_refund_no, request.amount)
        trade.refunds[request.out_refund_no] = refund
        return refund_result(trade, refund)

    def refund_query(self, *, out_trade_no: str, out_refund_no: str) -> RefundResult:
        trade = LEDGER.trades.get(out_trade_no)
        refund = trade.refunds.get(out_refund_no) if trade else None
        if trade is None or refund is None:
            return RefundResult(outcome=RefundOutcome.NOT_FOUND, out_refund_no=out_refund_no)
        return refund_result(trade, refund)

    def parse_notification(
        self, *, headers: Mapping[str, str], body: bytes, content_type: str
    ) -> Notification:
        raise NotificationRejected("unsupported", "the double takes no HTTP notifications")

    def acknowledgement(self, *, ok: bool, message: str = "") -> Acknowledgement:
        return Acknowledgement(status=200, body=b"ok" if ok else b"fail", content_type="text/plain")

    def verify_return(self, params: Mapping[str, str]) -> ReturnInfo:
        return ReturnInfo(out_trade_no=params.get("out_trade_no", ""), verified=False)

    def fetch_statement(self, day: dt.date) -> list[StatementLine]:
        return []


def trade_status(out_trade_no: str) -> TradeStatus:
    """What the gateway says about a trade right now."""
    trade = LEDGER.trades.get(out_trade_no)
    if trade is None:
        return TradeStatus(outcome=TradeOutcome.NOT_FOUND, out_trade_no=out_trade_no)
    outcome = {
        "open": TradeOutcome.NOT_PAID,
        "paid": TradeOutcome.PAID,
        "closed": TradeOutcome.CLOSED,
    }[trade.status]
    return TradeStatus(
        outcome=outcome,
        out_trade_no=out_trade_no,
        gateway_trade_no="G" + out_trade_no,
        amount=trade.amount,
        currency=trade.currency,
        paid_at=trade.paid_at,
    )


def refund_result(trade: Trade, refund: GatewayRefund) -> RefundResult:
    return RefundResult(
        outcome=RefundOutcome(refund.status),
        out_refund_no=refund.out_refund_no,
        out_trade_no=trade.out_trade_no,
        gateway_refund_id="GR" + refund.out_refund_no,
        amount=refund.amount,
    )


def build(config: Mapping[str, Any]) -> DoubleGateway:
    return DoubleGateway(str(config.get("CHANNEL", "alipay")))
