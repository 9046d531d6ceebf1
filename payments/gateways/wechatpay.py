"""WeChat Pay API v3 adapter (direct merchant, platform public-key mode).

Requests carry ``Authorization: WECHATPAY2-SHA256-RSA2048 …`` signed over
``METHOD\\nPATH?QUERY\\nTS\\nNONCE\\nBODY\\n`` — the path and body are taken from the prepared
request, so what is signed is byte for byte what is sent. Answers are trusted only when
``Wechatpay-Serial`` names our platform key and the platform signature over ``TS\\nNONCE\\nBODY\\n``
checks out; a 2xx that fails this is ``UNKNOWN``, and so is an unsigned 4xx (it could come from
anything between us and WeChat). Notifications are verified the same way, then decrypted
(AEAD_AES_256_GCM with the APIv3 key).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import io
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode, urlsplit

import requests
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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
from payments.gateways.statements import PlainSha1, china_time, save_stream, yuan_to_fen
from shop import metrics

logger = logging.getLogger(__name__)

MAX_NOTIFY_BYTES = 64 * 1024
CURRENCY = "CNY"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"

_TRADE_STATE = {
    "SUCCESS": TradeOutcome.PAID,
    "REFUND": TradeOutcome.PAID,  # paid, and a refund is in progress or done
    "NOTPAY": TradeOutcome.NOT_PAID,
    "USERPAYING": TradeOutcome.NOT_PAID,
    "CLOSED": TradeOutcome.CLOSED,
    "REVOKED": TradeOutcome.CLOSED,
    "PAYERROR": TradeOutcome.CLOSED,
}
_REFUND_STATUS = {
    "SUCCESS": RefundOutcome.SUCCEEDED,
    "PROCESSING": RefundOutcome.PENDING,
    "CLOSED": RefundOutcome.FAILED,
    "ABNORMAL": RefundOutcome.FAILED,
}
# Error codes that say "try again", never "no".
_TRANSIENT_CODES = frozenset({"SYSTEM_ERROR", "SYSTEMERROR", "FREQUENCY_LIMITED", "BANKERROR"})
_NOT_FOUND_CODES = frozenset({"ORDER_NOT_EXIST", "ORDERNOTEXIST", "RESOURCE_NOT_EXISTS"})
_BILL_NOT_READY_CODES = frozenset({"NO_STATEMENT_EXIST", "STATEMENT_CREATING"})


@dataclass(frozen=True)
class _Answer:
    """One HTTP exchange. ``trusted`` only when WeChat's platform signature verified."""

    status: int | None  # None: no HTTP answer at all (timeout, connection error)
    text: str = ""
    trusted: bool = False
    error: str = ""
    data: dict[str, Any] | None = None
    content: bytes = b""

    @property
    def code(self) -> str:
        return str((self.data or {}).get("code", ""))

    def describe(self) -> str:
        if self.error:
            return self.error
        message = str((self.data or {}).get("message", ""))
        return " ".join(p for p in (f"http_{self.status}", self.code, message) if p)

    def refused(self) -> bool:
        """A signed 4xx business rejection (not a throttle or WeChat-side system error)."""
        return (
            self.trusted
            and self.status is not None
            and 400 <= self.status < 500
            and self.status != 429
            and self.code not in _TRANSIENT_CODES
        )

    def not_found(self) -> bool:
        return (
            self.trusted and self.status == 404 and (self.code in _NOT_FOUND_CODES or not self.code)
        )


def _header(headers: Mapping[str, str], name: str) -> str:
    """Header lookup by canonical, lower-case or Django ``HTTP_…`` META name."""
    wanted = name.lower()
    for key, value in headers.items():
        normal = key.lower().replace("_", "-")
        if normal.startswith("http-"):
            normal = normal[5:]
        if normal == wanted:
            return str(value)
    return ""


class WechatPayGateway:
    """One direct merchant on one WeChat Pay API v3 host. Holds a ``requests.Session``."""

    channel = "wechat"

    def __init__(
        self,
        *,
        appid: str,
        mchid: str,
        merchant_private_key_pem: str,
        merchant_serial_no: str,
        apiv3_key: str,
        platform_public_key_pem: str,
        platform_public_key_id: str,
        base_url: str,
        connect_timeout: float,
        read_timeout: float,
        notify_window_seconds: int = 300,
        session: requests.Session | None = None,
    ) -> None:
        self.appid = appid
        self.mchid = mchid
        self.merchant_serial_no = merchant_serial_no
        self.platform_public_key_id = platform_public_key_id
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.notify_window_seconds = notify_window_seconds
        self._private_key = signing.load_private_key(merchant_private_key_pem)
        self._platform_key = signing.load_public_key(platform_public_key_pem)
        key = apiv3_key.encode("utf-8")
        if len(key) != 32:
            raise ValueError("the APIv3 key must be 32 bytes")
        self._aead = AESGCM(key)
        self.session = session or requests.Session()

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        connect_timeout: float,
        read_timeout: float,
        notify_window_seconds: int,
    ) -> WechatPayGateway:
        """Build from one ``settings.PAYMENT_GATEWAYS["wechat"]`` entry."""
        return cls(
            appid=str(config["APPID"]),
            mchid=str(config["MCHID"]),
            merchant_private_key_pem=str(config["MERCHANT_PRIVATE_KEY"]),
            merchant_serial_no=str(config["MERCHANT_SERIAL_NO"]),
            apiv3_key=str(config["APIV3_KEY"]),
            platform_public_key_pem=str(config["PLATFORM_PUBLIC_KEY"]),
            platform_public_key_id=str(config["PLATFORM_PUBLIC_KEY_ID"]),
            base_url=str(config["BASE_URL"]),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            notify_window_seconds=notify_window_seconds,
        )

    # --- signing ---------------------------------------------------------------------------

    def authorization(self, method: str, path: str, body: bytes) -> str:
        """The ``Authorization`` header for one request (§2.2)."""
        timestamp = str(int(time.time()))
        nonce = signing.nonce_str()
        message = f"{method}\n{path}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = signing.rsa_sign(self._private_key, message)
        return (
            f'{SIGNATURE_TYPE} mchid="{self.mchid}",nonce_str="{nonce}",'
            f'signature="{signature}",timestamp="{timestamp}",serial_no="{self.merchant_serial_no}"'
        )

    def _platform_signed(self, headers: Mapping[str, str], body: bytes) -> str:
        """Empty string if WeChat's platform signature over ``body`` checks out, else why not."""
        timestamp = _header(headers, "Wechatpay-Timestamp")
        nonce = _header(headers, "Wechatpay-Nonce")
        signature = _header(headers, "Wechatpay-Signature")
        serial = _header(headers, "Wechatpay-Serial")
        if not (timestamp and nonce and signature and serial):
            return "unsigned"
        if signature.startswith(SIGNTEST_PREFIX):
            return "signature probe"
        signature_type = _header(headers, "Wechatpay-Signature-Type")
        if signature_type and signature_type != SIGNATURE_TYPE:
            return f"signature type {signature_type}"
        if serial != self.platform_public_key_id:
            return f"unknown Wechatpay-Serial {serial}"
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        if not signing.rsa_verify(self._platform_key, message, signature):
            return f"bad signature {signing.signature_hint(signature)}"
        return ""

    # --- transport -------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, body: Mapping[str, Any] | None = None, url: str = ""
    ) -> _Answer:
        payload = b""
        headers = {
            "Accept": "application/json",
            "Wechatpay-Serial": self.platform_public_key_id,
            "User-Agent": "oncepay-wechatpay/1",
        }
        if body is not None:
            payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        prepared = self.session.prepare_request(
            requests.Request(
                method, url or self.base_url + path, data=payload or None, headers=headers
            )
        )
        prepared.headers["Authorization"] = self.authorization(method, prepared.path_url, payload)
        try:
            response = self.session.send(prepared, timeout=self.timeout)
        except requests.Timeout:
            return _Answer(status=None, error="timeout")
        except requests.RequestException as exc:
            return _Answer(status=None, error=f"connection_error: {type(exc).__name__}")
        raw = response.content
        text = raw.decode("utf-8", errors="replace")
        data: dict[str, Any] | None = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            data = parsed if isinstance(parsed, dict) else None
        problem = self._platform_signed(response.headers, raw)
        if problem:
            if 200 <= response.status_code < 300:
                logger.warning("wechat %s %s: answer not trusted: %s", method, path, problem)
            return _Answer(response.status_code, text, False, problem, data, raw)
        return _Answer(response.status_code, text, True, "", data, raw)

    # --- payments --------------------------------------------------------------------------

    @metrics.gateway_call("prepay")
    def prepay(self, request: PrepayRequest) -> PrepayResult:
        if request.currency != CURRENCY:
            return PrepayResult(
                PrepayOutcome.REJECTED, error=f"unsupported_currency {request.currency}"
            )
        if request.amount <= 0:
            return PrepayResult(PrepayOutcome.REJECTED, error="amount must be positive")
        body: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "description": request.description[:127],
            "out_trade_no": request.out_trade_no,
            "time_expire": signing.to_china_time(request.expires_at)
            .replace(microsecond=0)
            .isoformat(),
            "notify_url": request.notify_url,
            "amount": {"total": request.amount, "currency": CURRENCY},
        }
        if request.client == Client.PC:
            path, field = "/v3/pay/transactions/native", "code_url"
        elif request.client == Client.WAP:
            path, field = "/v3/pay/transactions/h5", "h5_url"
            body["scene_info"] = {
                "payer_client_ip": request.payer_client_ip,
                "h5_info": {"type": "Wap"},
            }
        elif request.client == Client.APP:
            path, field = "/v3/pay/transactions/app", "prepay_id"
        else:
            return PrepayResult(
                PrepayOutcome.REJECTED, error=f"unsupported client {request.client}"
            )
        answer = self._request("POST", path, body=body)
        if answer.trusted and answer.status is not None and 200 <= answer.status < 300:
            value = str((answer.data or {}).get(field, ""))
            if not value:
                return PrepayResult(PrepayOutcome.UNKNOWN, error=f"no {field}", raw=answer.text)
            if request.client == Client.PC:
                action = PaymentAction(type="qr", code_url=value)
            elif request.client == Client.WAP:
                action = PaymentAction(type="redirect", url=value)
            else:
                action = PaymentAction(type="app", params=self.app_params(value))
            return PrepayResult(PrepayOutcome.CREATED, action=action, raw=answer.text)
        outcome = PrepayOutcome.REJECTED if answer.refused() else PrepayOutcome.UNKNOWN
        return PrepayResult(outcome, error=answer.describe(), raw=answer.text)

    def app_params(self, prepay_id: str) -> dict[str, str]:
        """What the WeChat app SDK needs to pay ``prepay_id``, signed with the merchant key."""
        timestamp = str(int(time.time()))
        nonce = signing.nonce_str()
        message = f"{self.appid}\n{timestamp}\n{nonce}\n{prepay_id}\n".encode()
        return {
            "appid": self.appid,
            "partnerid": self.mchid,
            "prepayid": prepay_id,
            "package": "Sign=WXPay",
            "noncestr": nonce,
            "timestamp": timestamp,
            "sign": signing.rsa_sign(self._private_key, message),
        }

    @metrics.gateway_call("query")
    def query(self, out_trade_no: str) -> TradeStatus:
        path = (
            f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}"
            f"?{urlencode({'mchid': self.mchid})}"
        )
        answer = self._request("GET", path)
        if answer.not_found():
            return TradeStatus(
                TradeOutcome.NOT_FOUND, out_trade_no, error=answer.describe(), raw=answer.text
            )
        if not (answer.trusted and answer.status == 200 and answer.data is not None):
            return TradeStatus(
                TradeOutcome.UNKNOWN, out_trade_no, error=answer.describe(), raw=answer.text
            )
        status = self._trade_status(answer.data, answer.text)
        if status.out_trade_no != out_trade_no:
            return TradeStatus(
                TradeOutcome.UNKNOWN,
                out_trade_no,
                error="answer is about another out_trade_no",
                raw=answer.text,
            )
        return status

    def _trade_status(self, data: Mapping[str, Any], raw: str) -> TradeStatus:
        state = str(data.get("trade_state", ""))
        outcome = _TRADE_STATE.get(state, TradeOutcome.UNKNOWN)
        error = "" if state in _TRADE_STATE else f"unknown trade_state {state!r}"
        amount_node = data.get("amount")
        amount: int | None = None
        currency = CURRENCY
        if isinstance(amount_node, dict):
            total = amount_node.get("total")
            if isinstance(total, int) and not isinstance(total, bool):
                amount = total
            currency = str(amount_node.get("currency") or CURRENCY)
        return TradeStatus(
            outcome,
            str(data.get("out_trade_no", "")),
            gateway_trade_no=str(data.get("transaction_id", "")),
            amount=amount,
            currency=currency,
            paid_at=_parse_rfc3339(str(data.get("success_time", ""))),
            merchant_id=str(data.get("mchid", "")),
            error=error,
            raw=raw,
        )

    @metrics.gateway_call("close")
    def close(self, out_trade_no: str) -> CloseResult:
        path = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}/close"
        answer = self._request("POST", path, body={"mchid": self.mchid})
        if answer.trusted and answer.status is not None and 200 <= answer.status < 300:
            return CloseResult(CloseOutcome.CLOSED, raw=answer.text)
        if answer.trusted and answer.code == "ORDERPAID":
            return CloseResult(CloseOutcome.PAID, error=answer.describe(), raw=answer.text)
        if answer.not_found() or (
            answer.trusted and answer.code in ("ORDERCLOSED", "ORDER_CLOSED")
        ):
            # Never opened or already closed: either way it cannot be paid any more.
            return CloseResult(CloseOutcome.CLOSED, error=answer.describe(), raw=answer.text)
        return CloseResult(CloseOutcome.UNKNOWN, error=answer.describe(), raw=answer.text)

    # --- refunds ---------------------------------------------------------------------------

    @metrics.gateway_call("refund")
    def refund(self, request: RefundRequest) -> RefundResult:
        def result(outcome: RefundOutcome, **fields: Any) -> RefundResult:
            return RefundResult(
                outcome,
                out_refund_no=request.out_refund_no,
                out_trade_no=request.out_trade_no,
                **fields,
            )

        if request.currency != CURRENCY:
            return result(RefundOutcome.FAILED, error="unsupported_currency")
        if request.amount <= 0:
            return result(RefundOutcome.FAILED, error="amount must be positive")
        body: dict[str, Any] = {
            "out_trade_no": request.out_trade_no,
            "out_refund_no": request.out_refund_no,
            "reason": request.reason[:80],
            "amount": {
                "refund": request.amount,
                "total": request.total_amount,
                "currency": CURRENCY,
            },
        }
        if request.notify_url:
            body["notify_url"] = request.notify_url
        if not body["reason"]:
            del body["reason"]
        answer = self._request("POST", "/v3/refund/domestic/refunds", body=body)
        if answer.trusted and answer.status == 200 and answer.data is not None:
            refund = self._refund_result(answer.data, answer.text)
            if refund.out_refund_no != request.out_refund_no:
                return result(
                    RefundOutcome.UNKNOWN, error="answer is about another refund", raw=answer.text
                )
            return refund
        outcome = RefundOutcome.FAILED if answer.refused() else RefundOutcome.UNKNOWN
        return result(outcome, error=answer.describe(), raw=answer.text)

    @metrics.gateway_call("refund_query")
    def refund_query(self, *, out_trade_no: str, out_refund_no: str) -> RefundResult:
        path = f"/v3/refund/domestic/refunds/{quote(out_refund_no, safe='')}"
        answer = self._request("GET", path)
        if answer.not_found():
            return RefundResult(
                RefundOutcome.NOT_FOUND,
                out_refund_no=out_refund_no,
                out_trade_no=out_trade_no,
                error=answer.describe(),
                raw=answer.text,
            )
        if answer.trusted and answer.status == 200 and answer.data is not None:
            refund = self._refund_result(answer.data, answer.text)
            if refund.out_refund_no == out_refund_no:
                return refund
            error = "answer is about another refund"
        else:
            error = answer.describe()
        return RefundResult(
            RefundOutcome.UNKNOWN,
            out_refund_no=out_refund_no,
            out_trade_no=out_trade_no,
            error=error,
            raw=answer.text,
        )

    @staticmethod
    def _refund_result(data: Mapping[str, Any], raw: str) -> RefundResult:
        # The refund object says "status"; the refund notify's plaintext says "refund_status".
        status = str(data.get("status") or data.get("refund_status") or "")
        outcome = _REFUND_STATUS.get(status, RefundOutcome.UNKNOWN)
        amount_node = data.get("amount")
        amount: int | None = None
        if isinstance(amount_node, dict):
            refund = amount_node.get("refund")
            if isinstance(refund, int) and not isinstance(refund, bool):
                amount = refund
        return RefundResult(
            outcome,
            out_refund_no=str(data.get("out_refund_no", "")),
            out_trade_no=str(data.get("out_trade_no", "")),
            gateway_refund_id=str(data.get("refund_id", "")),
            amount=amount,
            error="" if outcome == RefundOutcome.SUCCEEDED else f"status {status}",
            raw=raw,
        )

    # --- notifications and returns ---------------------------------------------------------

    def parse_notification(
        self, *, headers: Mapping[str, str], body: bytes, content_type: str
    ) -> Notification:
        """Verify, check freshness, decrypt and read a notify; ``NotificationRejected`` if not."""
        if len(body) > MAX_NOTIFY_BYTES:
            raise NotificationRejected("malformed", "body larger than 64 KiB")
        problem = self._platform_signed(headers, body)
        if problem:
            raise NotificationRejected("bad_signature", problem)
        try:
            sent_at = int(_header(headers, "Wechatpay-Timestamp"))
        except ValueError as exc:
            raise NotificationRejected("malformed", "Wechatpay-Timestamp") from exc
        if abs(time.time() - sent_at) > self.notify_window_seconds:
            raise NotificationRejected("stale_timestamp", f"sent at {sent_at}")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise NotificationRejected("malformed", f"content type {media_type!r}")
        try:
            envelope = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise NotificationRejected("malformed", "body is not JSON") from exc
        if not isinstance(envelope, dict) or not envelope.get("id"):
            raise NotificationRejected("malformed", "no event id")
        if envelope.get("resource_type") != "encrypt-resource":
            raise NotificationRejected(
                "malformed", f"resource_type {envelope.get('resource_type')}"
            )
        resource = envelope.get("resource")
        if not isinstance(resource, dict):
            raise NotificationRejected("malformed", "no resource")
        if resource.get("algorithm") != "AEAD_AES_256_GCM":
            raise NotificationRejected("unsupported", f"algorithm {resource.get('algorithm')}")
        plaintext = self._decrypt(resource)
        try:
            data = json.loads(plaintext)
        except ValueError as exc:
            raise NotificationRejected("malformed", "plaintext is not JSON") from exc
        if not isinstance(data, dict):
            raise NotificationRejected("malformed", "plaintext is not an object")
        if data.get("mchid") != self.mchid:
            raise NotificationRejected("wrong_merchant", f"mchid {data.get('mchid')}")
        event_type = str(envelope.get("event_type", ""))
        event_id = str(envelope["id"])
        if event_type == "TRANSACTION.SUCCESS":
            if data.get("appid") != self.appid:
                raise NotificationRejected("wrong_merchant", f"appid {data.get('appid')}")
            trade = self._trade_status(data, plaintext)
            if not trade.out_trade_no or trade.amount is None:
                raise NotificationRejected("malformed", "no out_trade_no or amount")
            return Notification(kind="payment", event_id=event_id, trade=trade, raw=plaintext)
        if event_type.startswith("REFUND."):
            refund = self._refund_result(data, plaintext)
            if not refund.out_refund_no:
                raise NotificationRejected("malformed", "no out_refund_no")
            return Notification(kind="refund", event_id=event_id, refund=refund, raw=plaintext)
        raise NotificationRejected("unsupported", f"event_type {event_type!r}")

    def _decrypt(self, resource: Mapping[str, Any]) -> str:
        try:
            ciphertext = base64.b64decode(str(resource.get("ciphertext", "")), validate=True)
            plaintext = self._aead.decrypt(
                str(resource.get("nonce", "")).encode("utf-8"),
                ciphertext,
                str(resource.get("associated_data", "")).encode("utf-8"),
            )
            return plaintext.decode("utf-8")
        except (binascii.Error, ValueError, InvalidTag, UnicodeDecodeError) as exc:
            raise NotificationRejected("decrypt_failed", type(exc).__name__) from exc

    def acknowledgement(self, *, ok: bool, message: str = "") -> Acknowledgement:
        if ok:
            return Acknowledgement(status=204, body=b"", content_type="text/plain")
        body = json.dumps({"code": "FAIL", "message": message or "rejected"}, ensure_ascii=False)
        return Acknowledgement(
            status=500, body=body.encode("utf-8"), content_type="application/json"
        )

    def verify_return(self, params: Mapping[str, str]) -> ReturnInfo:
        # WeChat Pay signs no return parameters: the caller must query the trade.
        return ReturnInfo(out_trade_no=params.get("out_trade_no", ""), verified=False)

    # --- statements ------------------------------------------------------------------------

    @metrics.gateway_call("fetch_statement")
    def open_statement(self, day: dt.date) -> StatementFile:
        """Download the day's ALL trade bill, gzipped, to a temporary file, streaming; the SHA1
        from the signed tradebill answer is checked over the bill as it streams in.

        Raises ``StatementNotReady`` for ``NO_STATEMENT_EXIST`` (not generated yet) and
        ``GatewayUnavailable`` for anything else that goes wrong.
        """
        query = {"bill_date": day.isoformat(), "bill_type": "ALL", "tar_type": "GZIP"}
        answer = self._request("GET", "/v3/bill/tradebill?" + urlencode(query))
        if not (answer.trusted and answer.status == 200 and answer.data):
            if answer.trusted and answer.code in _BILL_NOT_READY_CODES:
                raise StatementNotReady(f"wechat trade bill: {answer.describe()}")
            raise GatewayUnavailable(f"wechat trade bill: {answer.describe()}")
        download_url = str(answer.data.get("download_url", ""))
        if not download_url:
            raise GatewayUnavailable("wechat trade bill: no download_url")
        hash_type = str(answer.data.get("hash_type", "SHA1")).upper()
        expected = str(answer.data.get("hash_value", ""))
        if hash_type != "SHA1" or not expected:
            raise GatewayUnavailable(f"wechat trade bill: cannot check {hash_type} digest")
        parts = urlsplit(download_url)
        # The download is signed by us but not by WeChat; the hash from the signed answer vouches.
        prepared = self.session.prepare_request(
            requests.Request(
                "GET",
                download_url,
                headers={
                    "Wechatpay-Serial": self.platform_public_key_id,
                    "User-Agent": "oncepay-wechatpay/1",
                },
            )
        )
        path_url = parts.path + (f"?{parts.query}" if parts.query else "")
        prepared.headers["Authorization"] = self.authorization("GET", path_url, b"")
        try:
            response = self.session.send(prepared, timeout=self.timeout, stream=True)
        except requests.RequestException as exc:
            raise GatewayUnavailable(f"wechat bill download: {type(exc).__name__}") from exc
        if response.status_code != 200:
            response.close()
            raise GatewayUnavailable(f"wechat bill download: http_{response.status_code}")
        digest = PlainSha1()
        path, size = save_stream(response, label="wechat-bill", observers=[digest])
        if not digest.matches(expected):
            path.unlink(missing_ok=True)
            raise GatewayUnavailable("wechat bill download: hash mismatch")
        return StatementFile(
            channel="wechat", day=day, path=path, size=size, verified="sha1 of the bill",
            reader=read_trade_bill,
        )  # fmt: skip

    def fetch_statement(self, day: dt.date) -> list[StatementLine]:
        """Every line of the day's bill in a list: for tests and small days only."""
        with self.open_statement(day) as statement:
            return list(statement.lines())


def _open_maybe_gzipped(path: Path) -> gzip.GzipFile | IO[bytes]:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_trade_bill(path: Path) -> Iterator[StatementLine]:
    """Stream the lines of a (possibly gzipped) trade bill on disk."""
    try:
        with _open_maybe_gzipped(path) as raw:
            yield from iter_trade_bill(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(f"wechat bill: {exc}") from exc


def _parse_rfc3339(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=signing.CHINA_TZ)


def _bill_fields(line: str) -> list[str]:
    """Split a backtick-prefixed bill row; ``,` `` separates fields even if a name has commas.
    Cells are not stripped here: only the few that are read are."""
    text = line.strip()
    if text.startswith("`"):
        text = text[1:]
    return text.split(",`")


def parse_trade_bill(text: str) -> list[StatementLine]:
    """All lines of a trade bill held in a string (tests)."""
    return list(iter_trade_bill(io.StringIO(text)))


def iter_trade_bill(text: Iterable[str]) -> Iterator[StatementLine]:
    """Parse an ALL (or SUCCESS/REFUND) trade bill by header name, line by line; yuan become
    fen.

    Layout: a header line, backtick-prefixed detail rows, then a summary header and one
    summary row, which are skipped.
    """
    header: dict[str, int] | None = None
    for line in text:
        if not line.strip():
            continue
        if header is None:
            header = {name.strip().lstrip("\ufeff"): i for i, name in enumerate(line.split(","))}
            for needed in ("商户订单号", "交易状态"):
                if needed not in header:
                    raise ValueError(f"bill has no {needed} column")
            width = len(header)
            c_state, c_otn = header["交易状态"], header["商户订单号"]
            c_time, c_trade = header.get("交易时间"), header.get("微信订单号")
            c_currency = header.get("货币种类")
            c_refund_no, c_refund_state = header.get("商户退款单号"), header.get("退款状态")
            c_refund_amount = [header[c] for c in ("申请退款金额", "退款金额") if c in header]
            c_amount = [header[c] for c in ("订单金额", "应结订单金额") if c in header]
            continue
        if not line.startswith("`"):
            break  # the summary section starts
        row = _bill_fields(line)
        if len(row) < width:
            row += [""] * (width - len(row))
        state = row[c_state].strip()
        occurred = china_time(row[c_time]) if c_time is not None else None
        currency = (row[c_currency].strip() if c_currency is not None else "") or CURRENCY
        trade_no = row[c_trade].strip() if c_trade is not None else ""
        out_trade_no = row[c_otn].strip()
        if state == "REFUND":
            amount_text = next((row[i] for i in c_refund_amount if row[i].strip()), "")
            refund_state = row[c_refund_state].strip() if c_refund_state is not None else ""
            yield StatementLine(
                kind="refund",
                out_trade_no=out_trade_no,
                gateway_trade_no=trade_no,
                amount=abs(yuan_to_fen(amount_text)),
                currency=currency,
                occurred_at=occurred,
                out_refund_no=row[c_refund_no].strip() if c_refund_no is not None else "",
                settled=refund_state in ("", "SUCCESS"),
            )
        elif state == "SUCCESS":
            amount_text = next((row[i] for i in c_amount if row[i].strip()), "")
            yield StatementLine(
                kind="payment",
                out_trade_no=out_trade_no,
                gateway_trade_no=trade_no,
                amount=abs(yuan_to_fen(amount_text)),
                currency=currency,
                occurred_at=occurred,
            )
        else:
            raise ValueError(f"unknown 交易状态 {state!r}")
