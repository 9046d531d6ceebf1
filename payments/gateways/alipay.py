"""Alipay Open Platform adapter (``gateway.do``, RSA2).

Requests are signed over every non-empty parameter except ``sign`` (``sign_type`` included),
sorted, with raw values. Server answers are trusted only after the signature over the *raw text*
of the ``<method>_response`` node has checked out with Alipay's public key: the node is cut out
of the body as sent, never re-serialised. Notifications and return parameters are verified over
every parameter except ``sign`` and ``sign_type`` (empty values kept, as Alipay signs them).

Outcomes never guess: a timeout, a connection error, a non-200, an unsigned or badly signed
answer, or a code we do not recognise is ``UNKNOWN``; the caller polls.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import requests

from payments.gateways import signing
from payments.gateways.base import (
    Acknowledgement,
    Client,
    CloseOutcome,
    CloseResult,
    GatewayUnavailable,
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
    StatementFile,
    StatementLine,
    StatementNotReady,
    TradeOutcome,
    TradeStatus,
)
from payments.gateways.statements import china_time, save_stream, yuan_to_fen
from shop import metrics

logger = logging.getLogger(__name__)

MAX_NOTIFY_BYTES = 64 * 1024
CURRENCY = "CNY"
WAP_PRODUCT_CODE = "QUICK_WAP_WAY"
APP_PRODUCT_CODE = "QUICK_MSECURITY_PAY"
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

_TRADE_STATUS = {
    "WAIT_BUYER_PAY": TradeOutcome.NOT_PAID,
    "TRADE_SUCCESS": TradeOutcome.PAID,
    "TRADE_FINISHED": TradeOutcome.PAID,
    "TRADE_CLOSED": TradeOutcome.CLOSED,
}
_TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
# Gateway-level codes that mean "the request was refused as sent": missing/invalid parameters,
# business failure, insufficient permission. 20000/20001 (service/authorisation trouble) are not.
_REFUSAL_CODES = frozenset({"40001", "40002", "40004", "40006"})


class _Untrusted(Exception):
    """The answer cannot be relied on (network trouble, bad signature, unparseable)."""

    def __init__(self, error: str, raw: str = "") -> None:
        super().__init__(error)
        self.error = error
        self.raw = raw


@dataclass(frozen=True)
class _Answer:
    """A verified response node: ``code`` ``10000`` or an Alipay-signed failure."""

    node: dict[str, Any]
    raw: str

    @property
    def code(self) -> str:
        return str(self.node.get("code", ""))

    @property
    def sub_code(self) -> str:
        return str(self.node.get("sub_code", ""))

    @property
    def ok(self) -> bool:
        return self.code == "10000"

    def describe(self) -> str:
        parts = [
            self.code,
            self.sub_code,
            str(self.node.get("sub_msg") or self.node.get("msg", "")),
        ]
        return " ".join(p for p in parts if p)

    def refused(self) -> bool:
        """A signed, definite refusal (not a transient system error on Alipay's side)."""
        sub = self.sub_code
        transient = sub.startswith("isp.") or "SYSTEM_ERROR" in sub or "UNKNOW" in sub
        return self.code in _REFUSAL_CODES and not transient


@dataclass(frozen=True)
class _RefundIds:
    out_refund_no: str
    out_trade_no: str

    def result(self, outcome: RefundOutcome, **fields: Any) -> RefundResult:
        return RefundResult(
            outcome, out_refund_no=self.out_refund_no, out_trade_no=self.out_trade_no, **fields
        )


def raw_members(text: str) -> dict[str, str] | None:
    """The raw text of each member of a top-level JSON object, exactly as it appears.

    Returns None for anything but a single well-formed object without duplicate keys. This is
    how the response node is found without re-serialising it (Alipay signs the bytes it sent).
    """
    decoder = json.JSONDecoder()
    n = len(text)

    def skip(i: int) -> int:
        while i < n and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip(0)
    if i >= n or text[i] != "{":
        return None
    members: dict[str, str] = {}
    i = skip(i + 1)
    if i < n and text[i] == "}":
        return members if skip(i + 1) == n else None
    try:
        while True:
            if i >= n or text[i] != '"':
                return None
            key, i = decoder.raw_decode(text, i)
            i = skip(i)
            if i >= n or text[i] != ":":
                return None
            start = i = skip(i + 1)
            _, i = decoder.raw_decode(text, i)
            if key in members:
                return None
            members[key] = text[start:i]
            i = skip(i)
            if i < n and text[i] == ",":
                i = skip(i + 1)
                continue
            if i < n and text[i] == "}":
                break
            return None
    except json.JSONDecodeError:
        return None
    return members if skip(i + 1) == n else None


class AlipayGateway:
    """One merchant app on one Alipay gateway. Thread-compatible; holds a ``requests.Session``."""

    channel = "alipay"

    def __init__(
        self,
        *,
        app_id: str,
        seller_id: str,
        app_private_key_pem: str,
        alipay_public_key_pem: str,
        gateway_url: str,
        connect_timeout: float,
        read_timeout: float,
        session: requests.Session | None = None,
    ) -> None:
        self.app_id = app_id
        self.seller_id = seller_id
        self.gateway_url = gateway_url
        self.timeout = (connect_timeout, read_timeout)
        self._private_key = signing.load_private_key(app_private_key_pem)
        self._alipay_public_key = signing.load_public_key(alipay_public_key_pem)
        self.session = session or requests.Session()

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, connect_timeout: float, read_timeout: float
    ) -> AlipayGateway:
        """Build from one ``settings.PAYMENT_GATEWAYS["alipay"]`` entry."""
        return cls(
            app_id=str(config["APP_ID"]),
            seller_id=str(config["SELLER_ID"]),
            app_private_key_pem=str(config["APP_PRIVATE_KEY"]),
            alipay_public_key_pem=str(config["ALIPAY_PUBLIC_KEY"]),
            gateway_url=str(config["GATEWAY_URL"]),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )

    # --- signing ---------------------------------------------------------------------------

    def signed_params(self, method: str, biz: Mapping[str, Any], **extra: str) -> dict[str, str]:
        """Common parameters plus ``biz_content``, signed (§1.3). Empty extras are dropped."""
        params = {
            "app_id": self.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": signing.to_china_time(dt.datetime.now(dt.UTC)).strftime(_TIME_FORMAT),
            "version": "1.0",
            "biz_content": json.dumps(dict(biz), separators=(",", ":"), ensure_ascii=False),
        }
        params.update({k: v for k, v in extra.items() if v})
        content = signing.sorted_pairs_content(params, exclude=("sign",), drop_empty=True)
        params["sign"] = signing.rsa_sign(self._private_key, content.encode("utf-8"))
        return params

    def verify_params(self, params: Mapping[str, str]) -> bool:
        """Alipay's signature over notify/return parameters (all but sign and sign_type)."""
        signature = params.get("sign", "")
        if not signature or params.get("sign_type", "RSA2") != "RSA2":
            return False
        content = signing.sorted_pairs_content(
            params, exclude=("sign", "sign_type"), drop_empty=False
        )
        return signing.rsa_verify(self._alipay_public_key, content.encode("utf-8"), signature)

    # --- transport -------------------------------------------------------------------------

    def _call(self, method: str, biz: Mapping[str, Any], **extra: str) -> _Answer:
        """POST one server API call; return the verified node or raise ``_Untrusted``."""
        params = self.signed_params(method, biz, **extra)
        try:
            response = self.session.post(
                self.gateway_url,
                data=params,
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
                timeout=self.timeout,
            )
        except requests.Timeout as exc:
            raise _Untrusted("timeout") from exc
        except requests.RequestException as exc:
            raise _Untrusted(f"connection_error: {type(exc).__name__}") from exc
        try:
            text = response.content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Untrusted("unparseable: not utf-8") from exc
        if response.status_code != 200:
            raise _Untrusted(f"http_{response.status_code}", text)
        return self._verified_node(method, text)

    def _verified_node(self, method: str, text: str) -> _Answer:
        members = raw_members(text)
        if members is None:
            raise _Untrusted("unparseable", text)
        node_name = method.replace(".", "_") + "_response"
        raw_node = members.get(node_name)
        if raw_node is None:
            if "error_response" in members:
                raw_node = members["error_response"]
            else:
                raise _Untrusted(f"unparseable: no {node_name}", text)
        try:
            signature = json.loads(members["sign"]) if "sign" in members else ""
            node = json.loads(raw_node)
        except json.JSONDecodeError as exc:
            raise _Untrusted("unparseable", text) from exc
        if not isinstance(signature, str) or not signature:
            raise _Untrusted("unsigned", text)
        if not isinstance(node, dict):
            raise _Untrusted("unparseable: node is not an object", text)
        if not signing.rsa_verify(self._alipay_public_key, raw_node.encode("utf-8"), signature):
            logger.warning(
                "alipay %s: response signature %s did not verify",
                method,
                signing.signature_hint(signature),
            )
            raise _Untrusted("bad_signature", text)
        return _Answer(node=node, raw=text)

    # --- payments --------------------------------------------------------------------------

    @metrics.gateway_call("prepay")
    def prepay(self, request: PrepayRequest) -> PrepayResult:
        if request.currency != CURRENCY:
            return PrepayResult(
                PrepayOutcome.REJECTED, error=f"unsupported_currency {request.currency}"
            )
        if request.amount <= 0:
            return PrepayResult(PrepayOutcome.REJECTED, error="amount must be positive")
        biz: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "total_amount": signing.minor_to_yuan(request.amount),
            "subject": request.description[:256],
            "time_expire": signing.to_china_time(request.expires_at).strftime(_TIME_FORMAT),
        }
        if request.client == Client.PC:
            return self._precreate(request, biz)
        if request.client == Client.WAP:
            biz["product_code"] = WAP_PRODUCT_CODE
            params = self.signed_params(
                "alipay.trade.wap.pay",
                biz,
                notify_url=request.notify_url,
                return_url=request.return_url,
            )
            separator = "&" if "?" in self.gateway_url else "?"
            url = f"{self.gateway_url}{separator}{urlencode(params)}"
            return PrepayResult(
                PrepayOutcome.CREATED,
                action=PaymentAction(type="redirect", url=url),
                raw=self._unsigned_view(params),
            )
        if request.client == Client.APP:
            biz["product_code"] = APP_PRODUCT_CODE
            params = self.signed_params("alipay.trade.app.pay", biz, notify_url=request.notify_url)
            return PrepayResult(
                PrepayOutcome.CREATED,
                action=PaymentAction(type="app", params={"order_string": urlencode(params)}),
                raw=self._unsigned_view(params),
            )
        return PrepayResult(PrepayOutcome.REJECTED, error=f"unsupported client {request.client}")

    @staticmethod
    def _unsigned_view(params: Mapping[str, str]) -> str:
        """What we asked for, for the event log, without the signature."""
        return json.dumps({k: v for k, v in params.items() if k != "sign"}, ensure_ascii=False)

    def _precreate(self, request: PrepayRequest, biz: Mapping[str, Any]) -> PrepayResult:
        try:
            answer = self._call("alipay.trade.precreate", biz, notify_url=request.notify_url)
        except _Untrusted as exc:
            return PrepayResult(PrepayOutcome.UNKNOWN, error=exc.error, raw=exc.raw)
        if answer.ok:
            qr_code = str(answer.node.get("qr_code", ""))
            if not qr_code or answer.node.get("out_trade_no") not in (None, request.out_trade_no):
                return PrepayResult(
                    PrepayOutcome.UNKNOWN, error="unexpected precreate answer", raw=answer.raw
                )
            return PrepayResult(
                PrepayOutcome.CREATED,
                action=PaymentAction(type="qr", code_url=qr_code),
                raw=answer.raw,
            )
        outcome = PrepayOutcome.REJECTED if answer.refused() else PrepayOutcome.UNKNOWN
        return PrepayResult(outcome, error=answer.describe(), raw=answer.raw)

    @metrics.gateway_call("query")
    def query(self, out_trade_no: str) -> TradeStatus:
        try:
            answer = self._call("alipay.trade.query", {"out_trade_no": out_trade_no})
        except _Untrusted as exc:
            return TradeStatus(TradeOutcome.UNKNOWN, out_trade_no, error=exc.error, raw=exc.raw)
        return self._trade_status(out_trade_no, answer)

    def _trade_status(self, out_trade_no: str, answer: _Answer) -> TradeStatus:
        node = answer.node
        if not answer.ok:
            outcome = (
                TradeOutcome.NOT_FOUND
                if answer.sub_code == _TRADE_NOT_EXIST
                else TradeOutcome.UNKNOWN
            )
            return TradeStatus(outcome, out_trade_no, error=answer.describe(), raw=answer.raw)
        status = str(node.get("trade_status", ""))
        outcome = _TRADE_STATUS.get(status, TradeOutcome.UNKNOWN)
        error = "" if status in _TRADE_STATUS else f"unknown trade_status {status!r}"
        if str(node.get("out_trade_no", out_trade_no)) != out_trade_no:
            outcome, error = TradeOutcome.UNKNOWN, "answer is about another out_trade_no"
        amount: int | None = None
        try:
            if node.get("total_amount") not in (None, ""):
                amount = signing.yuan_to_minor(str(node["total_amount"]))
        except ValueError:
            outcome, error = TradeOutcome.UNKNOWN, "unparseable total_amount"
        return TradeStatus(
            outcome,
            out_trade_no,
            gateway_trade_no=str(node.get("trade_no", "")),
            amount=amount,
            currency=CURRENCY,
            paid_at=signing.parse_china_time(str(node.get("send_pay_date", ""))),
            # The query answer names no merchant; it is Alipay-signed for our app's request.
            merchant_id=self.app_id,
            error=error,
            raw=answer.raw,
        )

    @metrics.gateway_call("close")
    def close(self, out_trade_no: str) -> CloseResult:
        try:
            answer = self._call("alipay.trade.close", {"out_trade_no": out_trade_no})
        except _Untrusted as exc:
            return CloseResult(CloseOutcome.UNKNOWN, error=exc.error, raw=exc.raw)
        if answer.ok:
            return CloseResult(CloseOutcome.CLOSED, raw=answer.raw)
        sub = answer.sub_code
        if sub == _TRADE_NOT_EXIST or sub == "ACQ.TRADE_HAS_CLOSE":
            # Never opened (nobody scanned the QR) or already closed: it cannot be paid now.
            return CloseResult(CloseOutcome.CLOSED, error=answer.describe(), raw=answer.raw)
        if sub in ("ACQ.TRADE_HAS_SUCCESS", "ACQ.TRADE_HAS_FINISHED"):
            return CloseResult(CloseOutcome.PAID, error=answer.describe(), raw=answer.raw)
        if sub == "ACQ.TRADE_STATUS_ERROR":
            # Not WAIT_BUYER_PAY any more: paid, or already closed. Ask which.
            status = self.query(out_trade_no)
            if status.outcome == TradeOutcome.PAID:
                return CloseResult(CloseOutcome.PAID, error=answer.describe(), raw=answer.raw)
            if status.outcome == TradeOutcome.CLOSED:
                return CloseResult(CloseOutcome.CLOSED, error=answer.describe(), raw=answer.raw)
        return CloseResult(CloseOutcome.UNKNOWN, error=answer.describe(), raw=answer.raw)

    # --- refunds ---------------------------------------------------------------------------

    @metrics.gateway_call("refund")
    def refund(self, request: RefundRequest) -> RefundResult:
        ids = _RefundIds(request.out_refund_no, request.out_trade_no)
        if request.currency != CURRENCY:
            return ids.result(RefundOutcome.FAILED, error="unsupported_currency")
        if request.amount <= 0:
            return ids.result(RefundOutcome.FAILED, error="amount must be positive")
        biz = {
            "out_trade_no": request.out_trade_no,
            "refund_amount": signing.minor_to_yuan(request.amount),
            "out_request_no": request.out_refund_no,
            "refund_reason": request.reason[:256],
        }
        try:
            answer = self._call("alipay.trade.refund", biz)
        except _Untrusted as exc:
            return ids.result(RefundOutcome.UNKNOWN, error=exc.error, raw=exc.raw)
        if answer.ok:
            if str(answer.node.get("out_trade_no", request.out_trade_no)) != request.out_trade_no:
                return ids.result(
                    RefundOutcome.UNKNOWN, error="answer is about another trade", raw=answer.raw
                )
            # fund_change N on a retry means this out_request_no was already refunded.
            # refund_fee is the trade's cumulative refunded total, so report our own amount.
            return ids.result(
                RefundOutcome.SUCCEEDED,
                gateway_refund_id=str(answer.node.get("trade_no", "")),
                amount=request.amount,
                raw=answer.raw,
            )
        outcome = RefundOutcome.FAILED if answer.refused() else RefundOutcome.UNKNOWN
        return ids.result(outcome, error=answer.describe(), raw=answer.raw)

    @metrics.gateway_call("refund_query")
    def refund_query(self, *, out_trade_no: str, out_refund_no: str) -> RefundResult:
        ids = _RefundIds(out_refund_no, out_trade_no)
        biz = {"out_trade_no": out_trade_no, "out_request_no": out_refund_no}
        try:
            answer = self._call("alipay.trade.fastpay.refund.query", biz)
        except _Untrusted as exc:
            return ids.result(RefundOutcome.UNKNOWN, error=exc.error, raw=exc.raw)
        node = answer.node
        if not answer.ok:
            outcome = (
                RefundOutcome.NOT_FOUND
                if answer.sub_code == _TRADE_NOT_EXIST
                else RefundOutcome.UNKNOWN
            )
            return ids.result(outcome, error=answer.describe(), raw=answer.raw)
        status = str(node.get("refund_status", ""))
        amount_text = str(node.get("refund_amount", ""))
        if not status and not amount_text:
            return ids.result(RefundOutcome.NOT_FOUND, raw=answer.raw)
        try:
            amount = signing.yuan_to_minor(amount_text) if amount_text else None
        except ValueError:
            return ids.result(
                RefundOutcome.UNKNOWN, error="unparseable refund_amount", raw=answer.raw
            )
        # Older API versions answer without refund_status: data present means refunded.
        if status in ("REFUND_SUCCESS", ""):
            outcome = RefundOutcome.SUCCEEDED
        else:
            outcome = RefundOutcome.PENDING
        return ids.result(
            outcome,
            gateway_refund_id=str(node.get("trade_no", "")),
            amount=amount,
            error="" if outcome == RefundOutcome.SUCCEEDED else f"refund_status {status}",
            raw=answer.raw,
        )

    # --- notifications and returns ---------------------------------------------------------

    def parse_notification(
        self, *, headers: Mapping[str, str], body: bytes, content_type: str
    ) -> Notification:
        """Verify and read an async notify. Raises ``NotificationRejected`` for anything else."""
        if len(body) > MAX_NOTIFY_BYTES:
            raise NotificationRejected("malformed", "body larger than 64 KiB")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/x-www-form-urlencoded":
            raise NotificationRejected("malformed", f"content type {media_type!r}")
        params = _parse_form(body)
        if not params.get("sign"):
            raise NotificationRejected("bad_signature", "unsigned")
        if not self.verify_params(params):
            raise NotificationRejected(
                "bad_signature", f"signature {signing.signature_hint(params['sign'])}"
            )
        for name in ("notify_id", "app_id", "out_trade_no", "trade_status", "seller_id"):
            if not params.get(name):
                raise NotificationRejected("malformed", f"missing {name}")
        if params["app_id"] != self.app_id:
            raise NotificationRejected("wrong_merchant", f"app_id {params['app_id']}")
        if params["seller_id"] != self.seller_id:
            raise NotificationRejected("wrong_merchant", f"seller_id {params['seller_id']}")
        status = params["trade_status"]
        if status not in _TRADE_STATUS:
            raise NotificationRejected("unsupported", f"trade_status {status!r}")
        try:
            amount = signing.yuan_to_minor(params.get("total_amount", ""))
        except ValueError as exc:
            raise NotificationRejected("malformed", "total_amount") from exc
        raw = body.decode("utf-8")
        is_refund = bool(params.get("out_biz_no") or params.get("refund_fee"))
        paid_at = signing.parse_china_time(params.get("gmt_payment", ""))
        trade = TradeStatus(
            # A refund notify means money was captured; TRADE_CLOSED then means fully refunded.
            TradeOutcome.PAID if is_refund else _TRADE_STATUS[status],
            params["out_trade_no"],
            gateway_trade_no=params.get("trade_no", ""),
            amount=amount,
            currency=CURRENCY,
            paid_at=paid_at,
            merchant_id=params["app_id"],
            raw=raw,
        )
        if not is_refund:
            return Notification(kind="payment", event_id=params["notify_id"], trade=trade, raw=raw)
        refund = RefundResult(
            RefundOutcome.SUCCEEDED,
            # A refund sent without out_request_no is keyed by the out_trade_no.
            out_refund_no=params.get("out_biz_no") or params["out_trade_no"],
            out_trade_no=params["out_trade_no"],
            gateway_refund_id=params.get("trade_no", ""),
            # refund_fee is the trade's cumulative refunded total, not this refund's amount.
            amount=None,
            raw=raw,
        )
        return Notification(
            kind="refund", event_id=params["notify_id"], trade=trade, refund=refund, raw=raw
        )

    def acknowledgement(self, *, ok: bool, message: str = "") -> Acknowledgement:
        return Acknowledgement(
            status=200, body=b"success" if ok else b"fail", content_type="text/plain"
        )

    def verify_return(self, params: Mapping[str, str]) -> ReturnInfo:
        out_trade_no = params.get("out_trade_no", "")
        verified = (
            self.verify_params(params)
            and params.get("app_id") == self.app_id
            and params.get("seller_id") == self.seller_id
            and bool(out_trade_no)
        )
        return ReturnInfo(out_trade_no=out_trade_no, verified=verified)

    # --- statements ------------------------------------------------------------------------

    @metrics.gateway_call("fetch_statement")
    def open_statement(self, day: dt.date) -> StatementFile:
        """Download the day's trade bill (a zip of GBK CSVs) to a temporary file, streaming.

        Alipay publishes no digest of the bill; the zip's own CRC-32 of the detail CSV is
        checked when the reader reaches its end (before any row is matched), and the download
        must be as long as its ``Content-Length``. Raises ``StatementNotReady`` for
        ``BILL_NOT_EXIST`` and ``GatewayUnavailable`` for anything else that goes wrong.
        """
        biz = {"bill_type": "trade", "bill_date": day.isoformat()}
        try:
            answer = self._call("alipay.data.dataservice.bill.downloadurl.query", biz)
        except _Untrusted as exc:
            raise GatewayUnavailable(f"alipay bill url: {exc.error}") from exc
        url = str(answer.node.get("bill_download_url", ""))
        if not answer.ok or not url:
            detail = f"alipay bill url: {answer.describe() or 'no url'}"
            if "BILL_NOT_EXIST" in detail:
                raise StatementNotReady(detail)
            raise GatewayUnavailable(detail)
        try:
            response = self.session.get(url, timeout=self.timeout, stream=True)
        except requests.RequestException as exc:
            raise GatewayUnavailable(f"alipay bill download: {type(exc).__name__}") from exc
        if response.status_code != 200:
            response.close()
            raise GatewayUnavailable(f"alipay bill download: http_{response.status_code}")
        path, size = save_stream(response, label="alipay-bill", observers=[])
        return StatementFile(
            channel="alipay", day=day, path=path, size=size, verified="zip crc-32",
            reader=read_bill_zip,
        )  # fmt: skip

    def fetch_statement(self, day: dt.date) -> list[StatementLine]:
        """Every line of the day's bill in a list: for tests and small days only."""
        with self.open_statement(day) as statement:
            return list(statement.lines())


def _parse_form(body: bytes) -> dict[str, str]:
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise NotificationRejected("malformed", "not a utf-8 form body") from exc
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise NotificationRejected("malformed", f"duplicate parameter {key}")
        params[key] = value
    return params


def _normalise_header(name: str) -> str:
    return name.strip().replace("（", "(").replace("）", ")").replace(" ", "")


_COL_TRADE_NO = "支付宝交易号"
_COL_OUT_TRADE_NO = "商户订单号"
_COL_BIZ_TYPE = "业务类型"
_COL_FINISHED = "完成时间"
_COL_CREATED = "创建时间"
_COL_AMOUNT = "订单金额(元)"
_COL_RECEIVED = "商家实收(元)"
_COL_REFUND_NO = "退款批次号/请求号"


def read_bill_zip(path: Path) -> Iterator[StatementLine]:
    """Stream the lines of the GBK detail CSV (``…业务明细.csv``, not the ``(汇总)`` summary)
    of a bill zip on disk. A damaged file raises ``ValueError`` (the CRC is checked at the
    member's end)."""
    try:
        with zipfile.ZipFile(path) as archive:
            detail: zipfile.ZipInfo | None = None
            for info in archive.infolist():
                name = info.filename
                if not info.flag_bits & 0x800:  # no UTF-8 flag: the name bytes are GBK
                    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
                        name = name.encode("cp437").decode("gbk")
                if name.lower().endswith(".csv") and "汇总" not in name:
                    detail = info
                    break
            if detail is None:
                raise ValueError("no detail CSV in the bill zip")
            with archive.open(detail) as member:
                text = io.TextIOWrapper(member, encoding="gb18030", newline="")
                yield from iter_bill_csv(text)
    except (zipfile.BadZipFile, UnicodeDecodeError, EOFError, KeyError) as exc:
        raise ValueError(f"alipay bill: {exc}") from exc


def parse_bill_zip(data: bytes) -> list[StatementLine]:
    """All lines of an in-memory bill zip (tests)."""
    fd, name = tempfile.mkstemp(suffix=".zip")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    try:
        return list(read_bill_zip(Path(name)))
    finally:
        os.unlink(name)


def parse_bill_csv(text: str) -> list[StatementLine]:
    return list(iter_bill_csv(io.StringIO(text)))


def iter_bill_csv(text: Iterable[str]) -> Iterator[StatementLine]:
    """Detail rows by header name, one at a time. ``#`` lines (the title, the rules, the
    totals) are skipped. A refund row (业务类型 退款, a negative amount or a refund request
    number) becomes a "refund" line with a positive amount: 订单金额 when it is negative, else
    the negative 商家实收."""
    rows = csv.reader(line for line in text if not line.lstrip().startswith("#"))
    header: dict[str, int] | None = None
    for row in rows:
        if not "".join(row).strip():
            continue
        if header is None:
            header = {_normalise_header(name): index for index, name in enumerate(row)}
            for needed in (_COL_OUT_TRADE_NO, _COL_AMOUNT):
                if needed not in header:
                    raise ValueError(f"bill has no {needed} column")
            # A column the bill lacks reads the empty cell appended to every row.
            width = len(row)
            c_trade_no, c_otn, c_amount, c_received, c_refund_no, c_biz, c_done, c_created = (
                header.get(name, width)
                for name in (_COL_TRADE_NO, _COL_OUT_TRADE_NO, _COL_AMOUNT, _COL_RECEIVED,
                             _COL_REFUND_NO, _COL_BIZ_TYPE, _COL_FINISHED, _COL_CREATED)
            )  # fmt: skip
            continue
        if len(row) < width:
            row += [""] * (width - len(row))
        row.append("")
        out_trade_no = row[c_otn].strip()
        amount_text = row[c_amount].strip()
        if not out_trade_no or not amount_text:
            continue
        amount = yuan_to_fen(amount_text)
        received_text = row[c_received].strip()
        received = yuan_to_fen(received_text) if received_text else 0
        refund_no = row[c_refund_no].strip()
        is_refund = amount < 0 or received < 0 or bool(refund_no) or row[c_biz].strip() == "退款"
        if is_refund and amount >= 0 and received < 0:
            # Some bills repeat the original order amount on a refund row and put the refunded
            # money, negative, in 商家实收 only.
            amount = received
        occurred = row[c_done].strip() or row[c_created].strip()
        yield StatementLine(
            kind="refund" if is_refund else "payment",
            out_trade_no=out_trade_no,
            gateway_trade_no=row[c_trade_no].strip(),
            amount=abs(amount),
            currency=CURRENCY,
            occurred_at=china_time(occurred),
            out_refund_no=refund_no if is_refund else "",
        )
