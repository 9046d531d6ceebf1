"""Alipay Open Platform, as ``/gateway.do`` speaks it (protocols.md §1).

Requests arrive as GET (python-alipay-sdk puts everything in the query string) or as a POST form
(the official SDKs); both are read into one flat parameter map and verified over the *received*
values: every parameter but ``sign``, empty values dropped, ``sign_type`` included, sorted, joined
as ``k=v&…``. ``biz_content`` is never re-serialised before verification.

Server answers are ``{"<method>_response": NODE, "sign": "..."}`` where the signature covers the
exact bytes of NODE as emitted: we serialise the node once, sign those bytes and splice them into
the body. Business failures (40004) are signed too; gateway-level rejections (bad signature, wrong
app_id, unknown method) are not, as the real gateway cannot vouch for a caller it did not verify.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode

from sandbox import bills, crypto, timeutil
from sandbox.app import Sandbox
from sandbox.httpio import Request, Response, html_response, redirect, text_response
from sandbox.notifier import Delivery, Rendered
from sandbox.state import (
    Refund,
    RefundStatus,
    Status,
    Trade,
    View,
    draw_bill_faults,
    new_alipay_trade_no,
)

logger = logging.getLogger(__name__)

CHANNEL = "alipay"
CURRENCY = "CNY"
DEFAULT_TIMEOUT = dt.timedelta(days=15)  # Alipay's default when neither expiry is given
BILL_URL_TTL_SECONDS = 30.0  # bill_download_url is valid for 30 s (§1.7)

# Browser/app methods: the shopper's client carries the signed parameters to us.
BROWSER_METHODS: dict[str, tuple[str, frozenset[str]]] = {
    "alipay.trade.page.pay": ("PAGE", frozenset({"FAST_INSTANT_TRADE_PAY"})),
    # The docs say QUICK_WAP_WAY, python-alipay-sdk sends QUICK_WAP_PAY: accept both.
    "alipay.trade.wap.pay": ("WAP", frozenset({"QUICK_WAP_WAY", "QUICK_WAP_PAY"})),
    "alipay.trade.app.pay": ("APP", frozenset({"QUICK_MSECURITY_PAY"})),
}
RETURN_METHODS = {
    "PAGE": "alipay.trade.page.pay.return",
    "WAP": "alipay.trade.wap.pay.return",
}

_TIMEOUT_EXPRESS = re.compile(r"^(\d+)([mhd])$")
_AMOUNT = re.compile(r"^\d{1,9}(\.\d{1,2})?$")


class BizError(Exception):
    """A business failure: answered with code 40004 and this sub_code, signed."""

    def __init__(self, sub_code: str, sub_msg: str) -> None:
        super().__init__(f"{sub_code}: {sub_msg}")
        self.sub_code = sub_code
        self.sub_msg = sub_msg


class GatewayError(Exception):
    """A gateway-level rejection (40001/40002): answered unsigned."""

    def __init__(self, code: str, msg: str, sub_code: str, sub_msg: str) -> None:
        super().__init__(f"{sub_code}: {sub_msg}")
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg


# --- money and signatures ------------------------------------------------------------------------


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def parse_yuan(value: Any, field: str) -> int:
    text = str(value).strip() if value is not None else ""
    if not _AMOUNT.match(text):
        raise BizError("ACQ.INVALID_PARAMETER", f"{field} must be yuan with at most 2 decimals")
    try:
        fen = int(Decimal(text) * 100)
    except InvalidOperation as exc:
        raise BizError("ACQ.INVALID_PARAMETER", f"{field} is not a number") from exc
    if fen <= 0:
        raise BizError("ACQ.INVALID_PARAMETER", f"{field} must be positive")
    return fen


def signing_string(params: Mapping[str, str], exclude: frozenset[str]) -> str:
    return "&".join(
        f"{key}={params[key]}" for key in sorted(params) if key not in exclude and params[key] != ""
    )


def sign_params(sb: Sandbox, params: dict[str, str]) -> dict[str, str]:
    """Sign outgoing parameters (notifies, return URLs): Alipay excludes sign and sign_type."""
    unsigned = {k: v for k, v in params.items() if v != ""}
    message = signing_string(unsigned, frozenset({"sign", "sign_type"}))
    signed = dict(unsigned)
    signed["sign_type"] = "RSA2"
    signed["sign"] = crypto.rsa_sign(sb.config.alipay.alipay_private_key, message.encode())
    return signed


def response_key(method: str) -> str:
    return method.replace(".", "_") + "_response"


def signed_answer(sb: Sandbox, method: str, node: dict[str, Any]) -> Response:
    node_text = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
    signature = crypto.rsa_sign(sb.config.alipay.alipay_private_key, node_text.encode())
    body = f'{{"{response_key(method)}":{node_text},"sign":"{signature}"}}'
    return text_response(200, body, "application/json; charset=utf-8")


def unsigned_answer(key: str, error: GatewayError) -> Response:
    node = {
        "code": error.code,
        "msg": error.msg,
        "sub_code": error.sub_code,
        "sub_msg": error.sub_msg,
    }
    body = json.dumps({key: node}, ensure_ascii=False, separators=(",", ":"))
    return text_response(200, body, "application/json; charset=utf-8")


def biz_failure(sub_code: str, sub_msg: str, **extra: str) -> dict[str, Any]:
    return {
        "code": "40004",
        "msg": "Business Failed",
        "sub_code": sub_code,
        "sub_msg": sub_msg,
    } | extra


# --- request reading and verification ------------------------------------------------------------


def read_params(req: Request) -> dict[str, str]:
    """Query-string parameters plus, for a form POST, the body's. Raises ValueError."""
    params = dict(parse_qsl(req.query, keep_blank_values=True, errors="strict"))
    content_type = req.header("content-type").lower()
    if (
        req.method == "POST"
        and req.body
        and ("form-urlencoded" in content_type or not content_type)
    ):
        text = req.body.decode("utf-8")
        params.update(parse_qsl(text, keep_blank_values=True, errors="strict"))
    return params


def authenticate(sb: Sandbox, params: Mapping[str, str]) -> dict[str, Any]:
    """Check app_id and the RSA2 signature; return the parsed biz_content. Raises GatewayError."""
    if params.get("app_id") != sb.config.alipay.app_id:
        raise GatewayError("40002", "Invalid Arguments", "isv.invalid-app-id", "无效的AppID参数")
    if params.get("sign_type", "RSA2") != "RSA2":
        raise GatewayError(
            "40002", "Invalid Arguments", "isv.invalid-signature-type", "无效的签名类型"
        )
    # base64 never contains spaces: a "+" a client forgot to percent-encode arrives as one.
    signature = params.get("sign", "").replace(" ", "+")
    if not signature:
        raise GatewayError(
            "40001", "Missing Required Arguments", "isv.missing-signature", "缺少签名参数"
        )
    message = signing_string(params, frozenset({"sign"}))
    if not crypto.rsa_verify(sb.config.alipay.app_public_key, message.encode(), signature):
        raise GatewayError(
            "40002",
            "Invalid Arguments",
            "isv.invalid-signature",
            f"验签出错，网关生成的验签字符串为：{message}",
        )
    raw_biz = params.get("biz_content", "")
    try:
        biz = json.loads(raw_biz) if raw_biz else {}
    except ValueError as exc:
        raise GatewayError(
            "40002", "Invalid Arguments", "isv.invalid-parameter", "biz_content格式错误"
        ) from exc
    if not isinstance(biz, dict):
        raise GatewayError(
            "40002", "Invalid Arguments", "isv.invalid-parameter", "biz_content格式错误"
        )
    return biz


def _required(biz: Mapping[str, Any], name: str, max_len: int = 256) -> str:
    value = biz.get(name)
    if value is None or str(value).strip() == "":
        raise BizError("ACQ.INVALID_PARAMETER", f"缺少必选参数 {name}")
    text = str(value)
    if len(text) > max_len:
        raise BizError("ACQ.INVALID_PARAMETER", f"{name} 超过最大长度 {max_len}")
    return text


def _expiry(biz: Mapping[str, Any], now: dt.datetime) -> dt.datetime:
    """``time_expire`` (absolute, China time) wins over ``timeout_express`` (relative)."""
    time_expire = str(biz.get("time_expire") or "").strip()
    if time_expire:
        try:
            return timeutil.parse_alipay_time(time_expire)
        except ValueError as exc:
            raise BizError(
                "ACQ.INVALID_PARAMETER", "time_expire 格式应为 yyyy-MM-dd HH:mm:ss"
            ) from exc
    express = str(biz.get("timeout_express") or "").strip()
    if not express:
        return now + DEFAULT_TIMEOUT
    if express == "1c":  # "today": closes at midnight China time
        local = now.astimezone(timeutil.CHINA)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
        return midnight
    match = _TIMEOUT_EXPRESS.match(express)
    if not match:
        raise BizError("ACQ.INVALID_PARAMETER", "timeout_express 取值范围：1m～15d，不接受小数")
    count, unit = int(match.group(1)), match.group(2)
    delta = {
        "m": dt.timedelta(minutes=count),
        "h": dt.timedelta(hours=count),
        "d": dt.timedelta(days=count),
    }[unit]
    if not dt.timedelta(minutes=1) <= delta <= dt.timedelta(days=15):
        raise BizError("ACQ.INVALID_PARAMETER", "timeout_express 取值范围：1m～15d")
    return now + delta


def _register(
    sb: Sandbox, *, kind: str, params: Mapping[str, str], biz: Mapping[str, Any], now: dt.datetime
) -> Trade:
    """Create the trade, or return the existing one when the same parameters come again."""
    out_trade_no = _required(biz, "out_trade_no", 64)
    amount = parse_yuan(biz.get("total_amount"), "total_amount")
    subject = _required(biz, "subject", 256)
    expires_at = _expiry(biz, now)
    fingerprint = (amount, subject)
    with sb.ledger.lock:
        existing = sb.ledger.get(CHANNEL, out_trade_no)
        if existing is not None:
            view = existing.view(now)
            if view == View.PAID:
                raise BizError("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
            if view in (View.CLOSED, View.EXPIRED):
                raise BizError("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            if existing.fingerprint != fingerprint:
                raise BizError("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            return existing
        trade = Trade(
            channel=CHANNEL,
            out_trade_no=out_trade_no,
            trade_no=new_alipay_trade_no(now),
            kind=kind,
            amount=amount,
            currency=CURRENCY,
            subject=subject,
            notify_url=params.get("notify_url", ""),
            return_url=params.get("return_url", ""),
            created_at=now,
            expires_at=expires_at,
            fingerprint=fingerprint,
            attach=str(biz.get("passback_params") or ""),
            body=str(biz.get("body") or ""),
        )
        sb.ledger.add(trade)
        return trade


def _find(sb: Sandbox, biz: Mapping[str, Any]) -> Trade:
    """trade_no wins when both are given (§1.6). Caller holds the ledger lock."""
    trade_no = str(biz.get("trade_no") or "")
    out_trade_no = str(biz.get("out_trade_no") or "")
    if not trade_no and not out_trade_no:
        raise BizError("ACQ.INVALID_PARAMETER", "out_trade_no 和 trade_no 不能同时为空")
    trade = (
        sb.ledger.by_trade_no(CHANNEL, trade_no)
        if trade_no
        else sb.ledger.get(CHANNEL, out_trade_no)
    )
    if trade is None:
        raise BizError("ACQ.TRADE_NOT_EXIST", "交易不存在")
    return trade


def trade_status(trade: Trade, now: dt.datetime) -> str:
    view = trade.view(now)
    if view == View.PAID:
        # A fully refunded trade is TRADE_CLOSED; partial refunds leave it TRADE_SUCCESS.
        return "TRADE_CLOSED" if trade.refunded >= trade.amount else "TRADE_SUCCESS"
    if view in (View.CLOSED, View.EXPIRED):
        return "TRADE_CLOSED"
    return "WAIT_BUYER_PAY"


def _success(**fields: str) -> dict[str, Any]:
    return {"code": "10000", "msg": "Success"} | fields


# --- server methods ------------------------------------------------------------------------------


def precreate(sb: Sandbox, params: Mapping[str, str], biz: Mapping[str, Any]) -> Response:
    trade = _register(sb, kind="PRECREATE", params=params, biz=biz, now=timeutil.now())
    answer = signed_answer(
        sb,
        "alipay.trade.precreate",
        _success(
            out_trade_no=trade.out_trade_no, qr_code=sb.cashier_url(CHANNEL, trade.out_trade_no)
        ),
    )
    if sb.faults.draw("prepay_timeout"):
        # The trade exists, but the merchant never learns it: hang, then hang up.
        return Response(0, hang_seconds=sb.faults.number("hang_seconds"), drop_connection=True)
    return answer


def query(sb: Sandbox, params: Mapping[str, str], biz: Mapping[str, Any]) -> Response:
    now = timeutil.now()
    with sb.ledger.lock:
        trade = _find(sb, biz)
        paid = trade.status == Status.PAID
        node = _success(
            trade_no=trade.trade_no,
            out_trade_no=trade.out_trade_no,
            trade_status=trade_status(trade, now),
            total_amount=yuan(trade.amount),
            buyer_pay_amount=yuan(trade.amount) if paid else "0.00",
            point_amount="0.00",
            invoice_amount=yuan(trade.amount) if paid else "0.00",
            receipt_amount=yuan(trade.amount) if paid else "0.00",
        )
        if paid and trade.paid_at:
            node |= {
                "buyer_logon_id": trade.buyer_logon_id,
                "buyer_user_id": trade.buyer_id,
                "buyer_user_type": "PRIVATE",
                "send_pay_date": timeutil.alipay_time(trade.paid_at),
                "fund_bill_list": [{"amount": yuan(trade.amount), "fund_channel": "ALIPAYACCOUNT"}],
            }
    return signed_answer(sb, "alipay.trade.query", node)


def close(sb: Sandbox, params: Mapping[str, str], biz: Mapping[str, Any]) -> Response:
    now = timeutil.now()
    with sb.ledger.lock:
        trade = _find(sb, biz)
        view = trade.view(now)
        if view == View.PAID:
            raise BizError("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if view == View.NOTPAY:
            if sb.faults.draw("ignore_close"):
                trade.close_ignored = True  # answer "closed", keep it payable
            else:
                trade.status = Status.CLOSED
                trade.closed_at = now
        # Already closed or expired: closing again is answered as a success.
        node = _success(trade_no=trade.trade_no, out_trade_no=trade.out_trade_no)
    return signed_answer(sb, "alipay.trade.close", node)


def refund(sb: Sandbox, params: Mapping[str, str], biz: Mapping[str, Any]) -> Response:
    now = timeutil.now()
    amount = parse_yuan(biz.get("refund_amount"), "refund_amount")
    out_request_no = str(biz.get("out_request_no") or "")
    with sb.ledger.lock:
        trade = _find(sb, biz)
        if trade.status != Status.PAID:
            raise BizError("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if not out_request_no:
            # Without a request number only a full refund is allowed, and the trade number
            # stands in for the request number (that is what the refund query then takes).
            if amount != trade.amount:
                raise BizError("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与订单金额不一致")
            out_request_no = trade.out_trade_no
        existing = trade.find_refund(out_request_no)
        if existing is not None:
            node = _refund_node(trade, existing, fund_change="N")
            return signed_answer(sb, "alipay.trade.refund", node)
        if trade.refunded + amount > trade.amount:
            raise BizError("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额超限")
        if sb.faults.draw("refund_reject"):
            raise BizError("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足")
        new = Refund(
            out_refund_no=out_request_no,
            refund_id=out_request_no,
            amount=amount,
            status=RefundStatus.SUCCESS,  # Alipay refunds complete synchronously
            created_at=now,
            success_at=now,
            reason=str(biz.get("refund_reason") or ""),
        )
        draw_bill_faults(new, sb.faults)
        trade.refunds.append(new)
        node = _refund_node(trade, new, fund_change="Y")
        if sb.config.alipay_refund_notify and trade.notify_url:
            sb.notifier.submit(refund_delivery(sb, trade, new))
    return signed_answer(sb, "alipay.trade.refund", node)


def _refund_node(trade: Trade, refund_: Refund, *, fund_change: str) -> dict[str, Any]:
    return _success(
        trade_no=trade.trade_no,
        out_trade_no=trade.out_trade_no,
        buyer_logon_id=trade.buyer_logon_id,
        buyer_user_id=trade.buyer_id,
        fund_change=fund_change,
        refund_fee=yuan(trade.refunded),  # cumulative, as Alipay reports it
        send_back_fee=yuan(refund_.amount),
        gmt_refund_pay=timeutil.alipay_time(refund_.success_at or refund_.created_at),
    )


def refund_query(sb: Sandbox, params: Mapping[str, str], biz: Mapping[str, Any]) -> Response:
    out_request_no = _required(biz, "out_request_no", 64)
    with sb.ledger.lock:
        trade = _find(sb, biz)
        found = trade.find_refund(out_request_no)
        node = _success(
            trade_no=trade.trade_no,
            out_trade_no=trade.out_trade_no,
            out_request_no=out_request_no,
        )
        # An unknown request number is a *success without refund data*: callers must look for
        # refund_status, not at the code.
        if found is not None:
            node |= {
                "total_amount": yuan(trade.amount),
                "refund_amount": yuan(found.amount),
                "refund_status": "REFUND_SUCCESS",
                "gmt_refund_pay": timeutil.alipay_time(found.success_at or found.created_at),
            }
    return signed_answer(sb, "alipay.trade.fastpay.refund.query", node)


def bill_download_url(sb: Sandbox, params: Mapping[str, str], biz: Mapping[str, Any]) -> Response:
    bill_type = str(biz.get("bill_type") or "")
    bill_date = str(biz.get("bill_date") or "")
    if bill_type not in ("trade", "signcustomer"):
        raise BizError("INVAILID_ARGUMENTS", "bill_type 取值为 trade 或 signcustomer")
    try:
        period = bills.parse_period(bill_date)
    except ValueError as exc:
        raise BizError("INVAILID_ARGUMENTS", "bill_date 格式为 yyyy-MM-dd 或 yyyy-MM") from exc
    if period.start > timeutil.china_date(timeutil.now()) or sb.faults.draw("bill_not_ready"):
        raise BizError("BILL_NOT_EXIST", "账单不存在")
    filename = f"{sb.config.alipay.seller_id}_{period.label}.csv.zip"
    prewritten = sb.config.prewritten_bill(f"alipay_{period.label}.zip")
    if prewritten:
        token = sb.bills.issue(b"", "application/zip", filename, BILL_URL_TTL_SECONDS, prewritten)
    else:
        with sb.ledger.lock:  # a consistent snapshot: no payment lands half-way through
            content = bills.alipay_zip(
                seller_id=sb.config.alipay.seller_id, period=period, trades=sb.ledger.all()
            )
        token = sb.bills.issue(content, "application/zip", filename, BILL_URL_TTL_SECONDS)
    node = _success(bill_download_url=f"{sb.base_url}/bills/alipay/{token}")
    return signed_answer(sb, "alipay.data.dataservice.bill.downloadurl.query", node)


ServerMethod = Callable[[Sandbox, Mapping[str, str], Mapping[str, Any]], Response]
SERVER_METHODS: dict[str, ServerMethod] = {
    "alipay.trade.precreate": precreate,
    "alipay.trade.query": query,
    "alipay.trade.close": close,
    "alipay.trade.refund": refund,
    "alipay.trade.fastpay.refund.query": refund_query,
    "alipay.data.dataservice.bill.downloadurl.query": bill_download_url,
}
QUERY_METHODS = frozenset({"alipay.trade.query", "alipay.trade.fastpay.refund.query"})


# --- the gateway entry point ---------------------------------------------------------------------


def handle_gateway(sb: Sandbox, req: Request) -> Response:
    try:
        params = read_params(req)
    except ValueError:
        return unsigned_answer(
            "error_response",
            GatewayError("40002", "Invalid Arguments", "isv.invalid-encoding", "参数编码错误"),
        )
    method = params.get("method", "")
    if method in BROWSER_METHODS:
        return _browser_pay(sb, method, params)
    handler = SERVER_METHODS.get(method)
    if handler is None:
        sub = (
            ("isv.missing-method", "缺少方法名参数")
            if not method
            else ("isv.invalid-method", "不存在的方法名")
        )
        code, msg = (
            ("40001", "Missing Required Arguments")
            if not method
            else ("40002", "Invalid Arguments")
        )
        return unsigned_answer("error_response", GatewayError(code, msg, *sub))
    try:
        biz = authenticate(sb, params)
    except GatewayError as error:
        logger.info("alipay %s rejected: %s", method, error.sub_code)
        return unsigned_answer(response_key(method), error)
    # Faults strike after authentication, where a real outage would.
    if method in QUERY_METHODS:
        if sb.faults.draw("query_error"):
            return text_response(502, "sandbox fault: query_error")
        if sb.faults.draw("query_timeout"):
            time.sleep(sb.faults.number("hang_seconds"))
    elif method == "alipay.trade.close" and sb.faults.draw("close_error"):
        return text_response(502, "sandbox fault: close_error")
    elif method == "alipay.trade.refund" and sb.faults.draw("refund_error"):
        return text_response(502, "sandbox fault: refund_error")
    try:
        return handler(sb, params, biz)
    except BizError as error:
        return signed_answer(sb, method, biz_failure(error.sub_code, error.sub_msg))


def _browser_pay(sb: Sandbox, method: str, params: Mapping[str, str]) -> Response:
    """A shopper's browser (page/wap) or the Alipay app (app) brings the signed order to us:
    register the trade and send them to the cashier, like the real gateway's checkout page."""
    kind, product_codes = BROWSER_METHODS[method]
    try:
        biz = authenticate(sb, params)
        product_code = str(biz.get("product_code") or "")
        if product_code not in product_codes:
            raise BizError(
                "ACQ.INVALID_PARAMETER", f"product_code 应为 {' / '.join(sorted(product_codes))}"
            )
        trade = _register(sb, kind=kind, params=params, biz=biz, now=timeutil.now())
    except GatewayError as error:
        return html_response(400, _error_page(error.sub_code, error.sub_msg))
    except BizError as error:
        if error.sub_code == "ACQ.TRADE_HAS_SUCCESS":
            existing = sb.ledger.get(CHANNEL, str(biz.get("out_trade_no")))
            if existing is not None:
                return redirect(sb.cashier_url(CHANNEL, existing.out_trade_no))
        return html_response(400, _error_page(error.sub_code, error.sub_msg))
    return redirect(sb.cashier_url(CHANNEL, trade.out_trade_no))


def _error_page(code: str, message: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>支付宝 - 错误</title></head>"
        f"<body><h1>错误代码 {escape(code)}</h1><p>{escape(message)}</p></body></html>"
    )


# --- notifications and return parameters ---------------------------------------------------------


def _acknowledged(status: int, body: bytes) -> bool:
    # Only the exact seven characters count; HTML, whitespace or a redirect mean "try again".
    return status == 200 and body == b"success"


def _delivery(
    sb: Sandbox, trade: Trade, fields: dict[str, str], *, kind: str, out_refund_no: str = ""
) -> Delivery:
    notify_id = secrets.token_hex(16)
    base = {
        "notify_type": "trade_status_sync",
        "notify_id": notify_id,
        "charset": "utf-8",
        "version": "1.0",
        "app_id": sb.config.alipay.app_id,
        "auth_app_id": sb.config.alipay.app_id,
        "seller_id": sb.config.alipay.seller_id,
    } | fields

    def render() -> Rendered:
        # notify_time and the signature are fresh per attempt; notify_id stays.
        signed = sign_params(sb, base | {"notify_time": timeutil.alipay_time(timeutil.now())})
        return Rendered(
            urlencode(signed).encode(),
            {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )

    return Delivery(
        notify_id=notify_id,
        channel=CHANNEL,
        kind=kind,
        out_trade_no=trade.out_trade_no,
        out_refund_no=out_refund_no,
        url=trade.notify_url,
        render=render,
        acknowledges=_acknowledged,
        schedule=sb.config.notify_schedule(CHANNEL),
    )


def _trade_fields(trade: Trade) -> dict[str, str]:
    assert trade.paid_at is not None
    return {
        "trade_no": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "buyer_id": trade.buyer_id,
        "buyer_logon_id": trade.buyer_logon_id,
        "total_amount": yuan(trade.amount),
        "receipt_amount": yuan(trade.amount),
        "invoice_amount": yuan(trade.amount),
        "buyer_pay_amount": yuan(trade.amount),
        "point_amount": "0.00",
        "subject": trade.subject,
        "body": trade.body,
        "passback_params": trade.attach,
        "gmt_create": timeutil.alipay_time(trade.created_at),
        "gmt_payment": timeutil.alipay_time(trade.paid_at),
        "fund_bill_list": json.dumps(
            [{"amount": yuan(trade.amount), "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
        ),
    }


def paid_delivery(sb: Sandbox, trade: Trade) -> Delivery:
    """TRADE_SUCCESS notify for a just-paid trade. Caller holds the ledger lock."""
    return _delivery(
        sb, trade, _trade_fields(trade) | {"trade_status": "TRADE_SUCCESS"}, kind="payment"
    )


def refund_delivery(sb: Sandbox, trade: Trade, refund_: Refund) -> Delivery:
    """Refund notify (opt-in): TRADE_SUCCESS for partial, TRADE_CLOSED once fully refunded."""
    status = "TRADE_CLOSED" if trade.refunded >= trade.amount else "TRADE_SUCCESS"
    fields = _trade_fields(trade) | {
        "trade_status": status,
        "out_biz_no": refund_.out_refund_no,
        "refund_fee": yuan(trade.refunded),
        "gmt_refund": timeutil.alipay_time(refund_.success_at or refund_.created_at),
    }
    if status == "TRADE_CLOSED":
        fields["gmt_close"] = fields["gmt_refund"]
    return _delivery(sb, trade, fields, kind="refund", out_refund_no=refund_.out_refund_no)


def return_params(sb: Sandbox, trade: Trade) -> dict[str, str]:
    """The signed parameters the real gateway appends to return_url after a page/wap payment."""
    return sign_params(
        sb,
        {
            "charset": "utf-8",
            "out_trade_no": trade.out_trade_no,
            "method": RETURN_METHODS.get(trade.kind, RETURN_METHODS["PAGE"]),
            "total_amount": yuan(trade.amount),
            "trade_no": trade.trade_no,
            "auth_app_id": sb.config.alipay.app_id,
            "version": "1.0",
            "app_id": sb.config.alipay.app_id,
            "seller_id": sb.config.alipay.seller_id,
            "timestamp": timeutil.alipay_time(timeutil.now()),
        },
    )
