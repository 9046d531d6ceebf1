"""The gateway interface: small dataclasses in, small dataclasses out.

Gateways are the only code that speaks HTTP to a payment provider. They never touch models or
the database. Every answer says explicitly what the provider told us; a timeout, a connection
error or a 5xx is ``UNKNOWN`` — never "failed" — because the provider may have acted anyway.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol


class TradeOutcome(StrEnum):
    PAID = "paid"  # money captured (Alipay TRADE_SUCCESS/TRADE_FINISHED, WeChat SUCCESS/REFUND)
    NOT_PAID = "not_paid"  # trade exists and may still be paid
    CLOSED = "closed"  # trade closed or expired unpaid; can no longer be paid
    NOT_FOUND = "not_found"  # the gateway has no such trade (never created, or not yet opened)
    UNKNOWN = "unknown"  # timeout, connection error, 5xx, unparseable answer


class PrepayOutcome(StrEnum):
    CREATED = "created"  # the shopper can pay now with ``action``
    REJECTED = "rejected"  # the gateway refused (bad parameters, duplicate trade number, ...)
    UNKNOWN = "unknown"  # we do not know whether the trade exists: poll it


class CloseOutcome(StrEnum):
    CLOSED = "closed"  # closed now, or was already closed/expired, or never existed
    PAID = "paid"  # cannot close: it was paid (query it for the details)
    UNKNOWN = "unknown"  # failed or timed out: the trade may still be payable


class RefundOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"  # accepted, money still moving
    FAILED = "failed"  # rejected by the gateway for good (final)
    NOT_FOUND = "not_found"  # refund query: the gateway has no such refund
    UNKNOWN = "unknown"


class Client(StrEnum):
    PC = "pc"
    WAP = "wap"
    APP = "app"


@dataclass(frozen=True)
class PrepayRequest:
    out_trade_no: str
    amount: int  # minor units
    currency: str
    description: str
    client: Client
    expires_at: dt.datetime  # the order's deadline, always sent as the gateway's time_expire
    notify_url: str
    return_url: str
    payer_client_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class PaymentAction:
    """What the shopper's client does next: show a QR, follow a redirect, or pass app params."""

    type: str  # "qr" | "redirect" | "app"
    code_url: str = ""
    url: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        if self.type == "qr":
            return {"type": "qr", "code_url": self.code_url}
        if self.type == "redirect":
            return {"type": "redirect", "url": self.url}
        return {"type": "app", "params": dict(self.params)}


@dataclass(frozen=True)
class PrepayResult:
    outcome: PrepayOutcome
    action: PaymentAction | None = None
    gateway_trade_no: str = ""
    error: str = ""
    raw: str = ""


@dataclass(frozen=True)
class TradeStatus:
    outcome: TradeOutcome
    out_trade_no: str
    gateway_trade_no: str = ""
    amount: int | None = None  # minor units the gateway says were (or are to be) paid
    currency: str = ""
    paid_at: dt.datetime | None = None
    merchant_id: str = ""  # app id / mchid the gateway reports, checked by the caller
    error: str = ""
    raw: str = ""


@dataclass(frozen=True)
class CloseResult:
    outcome: CloseOutcome
    error: str = ""
    raw: str = ""


@dataclass(frozen=True)
class RefundRequest:
    out_trade_no: str
    out_refund_no: str  # our idempotency key at the gateway: a retry never refunds twice
    amount: int
    total_amount: int
    currency: str
    reason: str
    notify_url: str


@dataclass(frozen=True)
class RefundResult:
    outcome: RefundOutcome
    out_refund_no: str
    out_trade_no: str = ""
    gateway_refund_id: str = ""
    amount: int | None = None
    error: str = ""
    raw: str = ""


@dataclass(frozen=True)
class Notification:
    """A verified, decrypted notification. Only ever built after the signature checked out."""

    kind: str  # "payment" | "refund"
    event_id: str  # the gateway's notification id (Alipay notify_id, WeChat event id)
    trade: TradeStatus | None = None
    refund: RefundResult | None = None
    raw: str = ""  # the plaintext (decrypted) payload, for the event log


@dataclass(frozen=True)
class Acknowledgement:
    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True)
class ReturnInfo:
    out_trade_no: str
    verified: bool  # the return parameters carried a valid gateway signature


@dataclass(frozen=True, slots=True)
class StatementLine:
    kind: str  # "payment" | "refund"
    out_trade_no: str
    gateway_trade_no: str
    amount: int  # minor units, always positive
    currency: str
    occurred_at: dt.datetime | None
    out_refund_no: str = ""
    settled: bool = True  # a refund line: the money went back (WeChat PROCESSING: not yet)


@dataclass
class StatementFile:
    """A statement downloaded to a temporary file and verified (length, and the gateway's
    digest where it publishes one) while it streamed in. Iterating ``lines()`` reads it again
    from disk, line by line; nothing holds the whole file in memory. ``close`` deletes it."""

    channel: str
    day: dt.date
    path: Path
    size: int  # bytes downloaded
    verified: str  # what vouched for the bytes, e.g. "sha1 of the bill" or "zip crc32"
    reader: Callable[[Path], Iterator[StatementLine]]

    def lines(self) -> Iterator[StatementLine]:
        return self.reader(self.path)

    def close(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> StatementFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NotificationRejected(Exception):
    """A notification we refuse: forged, stale, replayed, malformed or for another merchant.

    ``code`` is stable (``bad_signature``, ``stale_timestamp``, ``wrong_merchant``,
    ``malformed``, ``unsupported``, ...); the detail is for operators, never for the sender.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


class GatewayUnavailable(Exception):
    """The provider could not be reached or answered in a way we cannot interpret."""


class StatementNotReady(GatewayUnavailable):
    """The gateway has not published that day's statement yet (try again later)."""


class PaymentGateway(Protocol):
    channel: str

    def prepay(self, request: PrepayRequest) -> PrepayResult: ...

    def query(self, out_trade_no: str) -> TradeStatus: ...

    def close(self, out_trade_no: str) -> CloseResult: ...

    def refund(self, request: RefundRequest) -> RefundResult: ...

    def refund_query(self, *, out_trade_no: str, out_refund_no: str) -> RefundResult: ...

    def parse_notification(
        self, *, headers: Mapping[str, str], body: bytes, content_type: str
    ) -> Notification: ...

    def acknowledgement(self, *, ok: bool, message: str = "") -> Acknowledgement: ...

    def verify_return(self, params: Mapping[str, str]) -> ReturnInfo: ...

    def open_statement(self, day: dt.date) -> StatementFile:
        """Download the day's statement (no transaction open). Raises ``StatementNotReady``
        when the gateway has not published it yet, ``GatewayUnavailable`` otherwise."""
        ...
