"""The sandbox's ledger: trades and refunds in memory, behind one lock.

The ledger is the ground truth the invariant checks read (``/sandbox/ledger``): whether money
moved, and how much went back. What a gateway *tells* the merchant about a trade can differ from
the truth when a fault says so (``ignore_close``); ``Trade.view`` is that merchant-facing view,
``Trade.status`` the truth.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sandbox import timeutil
from sandbox.faults import Faults


class Status(StrEnum):
    """Ground truth: can the buyer still pay, and did they?"""

    NOTPAY = "NOTPAY"
    PAID = "PAID"
    CLOSED = "CLOSED"


class View(StrEnum):
    """What the gateway reports to the merchant (each protocol maps it onto its own words)."""

    NOTPAY = "NOTPAY"
    PAID = "PAID"
    CLOSED = "CLOSED"  # closed by the merchant (or so the merchant was told)
    EXPIRED = "EXPIRED"  # unpaid past its time_expire


class RefundStatus(StrEnum):
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"


@dataclass
class Refund:
    out_refund_no: str
    refund_id: str
    amount: int
    status: RefundStatus
    created_at: dt.datetime
    success_at: dt.datetime | None = None
    reason: str = ""
    notify_url: str = ""
    # Statement faults (``bill_omit``, ``bill_amount_mismatch``), drawn once when the refund is
    # made, so that every statement of its day tells the same (wrong) story.
    bill_omitted: bool = False
    bill_amount_delta: int = 0


@dataclass
class Trade:
    channel: str  # "alipay" | "wechat"
    out_trade_no: str
    trade_no: str  # Alipay trade_no / WeChat transaction_id
    kind: str  # PRECREATE/PAGE/WAP/APP for Alipay, NATIVE/H5/APP/JSAPI for WeChat
    amount: int  # minor units
    currency: str
    subject: str
    notify_url: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    fingerprint: tuple[Any, ...]  # the parameters a repeated create must match
    return_url: str = ""
    attach: str = ""  # WeChat attach / Alipay passback_params, echoed back untouched
    body: str = ""
    prepay_id: str = ""
    buyer_id: str = ""
    buyer_logon_id: str = ""
    status: Status = Status.NOTPAY
    paid_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    close_ignored: bool = False  # merchant was told "closed" but the trade stayed payable
    refunds: list[Refund] = field(default_factory=list)
    bill_omitted: bool = False  # statement faults, drawn once when the trade is paid
    bill_amount_delta: int = 0

    def is_expired(self, now: dt.datetime) -> bool:
        return (
            self.status == Status.NOTPAY and self.expires_at is not None and now >= self.expires_at
        )

    def view(self, now: dt.datetime) -> View:
        if self.status == Status.PAID:
            return View.PAID
        if self.status == Status.CLOSED or self.close_ignored:
            return View.CLOSED
        if self.is_expired(now):
            return View.EXPIRED
        return View.NOTPAY

    @property
    def refunded(self) -> int:
        # PROCESSING refunds count: the money is committed and always completes here.
        return sum(refund.amount for refund in self.refunds)

    def find_refund(self, out_refund_no: str) -> Refund | None:
        return next((r for r in self.refunds if r.out_refund_no == out_refund_no), None)


class PayRefused(Exception):
    """The buyer cannot pay this trade. ``code`` is stable for the control API."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


BILL_AMOUNT_DELTA = 1  # fen: what ``bill_amount_mismatch`` adds in the statement


def draw_bill_faults(entry: Trade | Refund, faults: Faults) -> None:
    """Decide once, when money moves, how the statements will misreport this payment/refund."""
    entry.bill_omitted = faults.draw("bill_omit")
    entry.bill_amount_delta = BILL_AMOUNT_DELTA if faults.draw("bill_amount_mismatch") else 0


def _digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def new_alipay_trade_no(now: dt.datetime) -> str:
    return now.astimezone(timeutil.CHINA).strftime("%Y%m%d") + "22001" + _digits(15)


def new_wechat_transaction_id(now: dt.datetime) -> str:
    return "4200" + _digits(6) + now.astimezone(timeutil.CHINA).strftime("%Y%m%d") + _digits(10)


def new_refund_id() -> str:
    return "50" + _digits(30)


def new_alipay_buyer() -> tuple[str, str]:
    return "2088" + _digits(12), "san***@sandbox.example"


def new_openid() -> str:
    return "o" + secrets.token_urlsafe(20)[:27]


class Ledger:
    """All trades, keyed by (channel, out_trade_no).

    ``lock`` is re-entrant so protocol modules can hold it across a read-check-write sequence
    and still call the helpers here. Nothing slow (network, sleeps) happens under it.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._trades: dict[tuple[str, str], Trade] = {}

    def reset(self) -> None:
        with self.lock:
            self._trades.clear()

    def get(self, channel: str, out_trade_no: str) -> Trade | None:
        with self.lock:
            return self._trades.get((channel, out_trade_no))

    def by_trade_no(self, channel: str, trade_no: str) -> Trade | None:
        if not trade_no:  # unpaid WeChat trades have no transaction_id yet
            return None
        with self.lock:
            return next(
                (
                    t
                    for t in self._trades.values()
                    if t.channel == channel and t.trade_no == trade_no
                ),
                None,
            )

    def add(self, trade: Trade) -> None:
        with self.lock:
            self._trades[(trade.channel, trade.out_trade_no)] = trade

    def all(self) -> list[Trade]:
        with self.lock:
            return sorted(self._trades.values(), key=lambda t: t.created_at)

    def find_refund(self, channel: str, out_refund_no: str) -> tuple[Trade, Refund] | None:
        """WeChat's out_refund_no is unique per merchant, so it alone finds the refund."""
        with self.lock:
            for trade in self._trades.values():
                if trade.channel != channel:
                    continue
                refund = trade.find_refund(out_refund_no)
                if refund is not None:
                    return trade, refund
            return None

    def pay(self, channel: str, out_trade_no: str, *, now: dt.datetime, faults: Faults) -> Trade:
        """The buyer pays. Raises PayRefused for unknown, paid, closed or expired trades,
        except where ``ignore_time_expire`` lets an expired one through."""
        with self.lock:
            trade = self._trades.get((channel, out_trade_no))
            if trade is None:
                raise PayRefused("trade_not_found", f"no {channel} trade {out_trade_no}")
            if trade.status == Status.PAID:
                raise PayRefused("trade_paid", "the trade is already paid")
            if trade.status == Status.CLOSED:
                raise PayRefused("trade_closed", "the trade is closed")
            if trade.is_expired(now) and not faults.draw("ignore_time_expire"):
                raise PayRefused("trade_expired", "the trade's time_expire has passed")
            trade.status = Status.PAID
            trade.paid_at = now
            draw_bill_faults(trade, faults)
            if channel == "alipay":
                trade.buyer_id, trade.buyer_logon_id = new_alipay_buyer()
            else:
                trade.trade_no = new_wechat_transaction_id(now)
                trade.buyer_id = new_openid() if not trade.buyer_id else trade.buyer_id
            return trade


def ledger_entry(trade: Trade, now: dt.datetime) -> dict[str, Any]:
    """The control API's view of one trade (contract.md: amounts in minor units)."""
    status = trade.status
    expired = trade.is_expired(now)
    if expired:
        status = Status.CLOSED
    return {
        "channel": trade.channel,
        "out_trade_no": trade.out_trade_no,
        "trade_no": trade.trade_no,
        "kind": trade.kind,
        "amount": trade.amount,
        "currency": trade.currency,
        "status": str(status),
        "created_at": timeutil.iso_utc(trade.created_at),
        "expires_at": timeutil.iso_utc(trade.expires_at),
        "expired": expired,
        "paid_at": timeutil.iso_utc(trade.paid_at),
        "closed_at": timeutil.iso_utc(trade.closed_at),
        "close_ignored": trade.close_ignored,
        "notify_url": trade.notify_url,
        "refunded": trade.refunded,
        "refunds": [
            {
                "out_refund_no": r.out_refund_no,
                "refund_id": r.refund_id,
                "amount": r.amount,
                "status": str(r.status),
                "created_at": timeutil.iso_utc(r.created_at),
                "success_at": timeutil.iso_utc(r.success_at),
            }
            for r in trade.refunds
        ],
    }
