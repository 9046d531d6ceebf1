"""WeChat Pay API v3 (direct merchant), as protocols.md §2 describes it.

Every request must carry ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid=…,nonce_str=…,
signature=…,timestamp=…,serial_no=…`` signed over ``METHOD\\nTARGET\\nTS\\nNONCE\\nBODY\\n`` with
the merchant key, where TARGET is the path and query exactly as sent and BODY the raw bytes.
Every answer we give to an authenticated request is signed with the platform key over
``TS\\nNONCE\\nBODY\\n`` and carries ``Wechatpay-Serial`` = the platform public key id, including a
204's empty body. Fault-injected 5xx answers are not signed (clients do not verify non-2xx).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import logging
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import quote

from sandbox import bills, crypto, timeutil
from sandbox.app import Sandbox
from sandbox.httpio import Request, Response
from sandbox.notifier import Delivery, Rendered
from sandbox.state import (
    Refund,
    RefundStatus,
    Status,
    Trade,
    View,
    draw_bill_faults,
    new_refund_id,
)

logger = logging.getLogger(__name__)

CHANNEL = "wechat"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
TIMESTAMP_WINDOW_SECONDS = 300
BILL_URL_TTL_SECONDS = 30.0

_OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
_OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
_AUTH_FIELD = re.compile(r'(\w+)="([^"]*)"')

TRADE_STATE_DESC = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "CLOSED": "订单已关闭",
    "REFUND": "订单发生过退款",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


# --- signing -------------------------------------------------------------------------------------


def signature_headers(sb: Sandbox, body: bytes) -> list[tuple[str, str]]:
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(16).upper()
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    return [
        ("Wechatpay-Timestamp", timestamp),
        ("Wechatpay-Nonce", nonce),
        ("Wechatpay-Signature", crypto.rsa_sign(sb.config.wechat.platform_private_key, message)),
        ("Wechatpay-Serial", sb.config.wechat.platform_public_key_id),
        ("Wechatpay-Signature-Type", SIGNATURE_TYPE),
    ]


def _request_id() -> tuple[str, str]:
    return ("Request-ID", uuid.uuid4().hex)


def signed_json(sb: Sandbox, status: int, payload: Any) -> Response:
    # Serialise once: the signature covers exactly these bytes.
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json; charset=utf-8"), _request_id()]
    return Response(status, body, headers + signature_headers(sb, body))


def signed_empty(sb: Sandbox, status: int = 204) -> Response:
    return Response(status, b"", [_request_id(), *signature_headers(sb, b"")])


def error(sb: Sandbox, exc: ApiError) -> Response:
    return signed_json(sb, exc.status, {"code": exc.code, "message": exc.message})


def unsigned_error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"code": code, "message": message}, ensure_ascii=False).encode()
    return Response(
        status, body, [("Content-Type", "application/json; charset=utf-8"), _request_id()]
    )


def authenticate(sb: Sandbox, req: Request) -> Response | None:
    """None when the merchant's signature checks out, else the 401 to send."""
    header = req.header("authorization")
    scheme, _, rest = header.partition(" ")
    if scheme != SIGNATURE_TYPE:
        return unsigned_error(
            401, "SIGN_ERROR", "Authorization 头缺失或认证类型不是 " + SIGNATURE_TYPE
        )
    fields = dict(_AUTH_FIELD.findall(rest))
    missing = [
        k
        for k in ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
        if not fields.get(k)
    ]
    if missing:
        return unsigned_error(401, "SIGN_ERROR", f"Authorization 缺少 {','.join(missing)}")
    merchant = sb.config.wechat
    if fields["mchid"] != merchant.mchid:
        return unsigned_error(401, "SIGN_ERROR", "商户号与签名不匹配")
    if fields["serial_no"].upper() != merchant.merchant_serial_no.upper():
        return unsigned_error(401, "SIGN_ERROR", "商户证书序列号有误")
    try:
        skew = abs(time.time() - int(fields["timestamp"]))
    except ValueError:
        return unsigned_error(401, "SIGN_ERROR", "timestamp 格式错误")
    if skew > TIMESTAMP_WINDOW_SECONDS:
        return unsigned_error(401, "SIGN_ERROR", "请求的时间戳已过期")
    message = (
        f"{req.method}\n{req.target}\n{fields['timestamp']}\n{fields['nonce_str']}\n".encode()
        + req.body
        + b"\n"
    )
    if not crypto.rsa_verify(merchant.merchant_public_key, message, fields["signature"]):
        return unsigned_error(401, "SIGN_ERROR", "签名错误，请检查签名串与商户私钥")
    return None


# --- parsing helpers -----------------------------------------------------------------------------


def _json_body(req: Request) -> dict[str, Any]:
    try:
        payload = req.json()
    except ValueError as exc:
        raise ApiError(400, "PARAM_ERROR", "请求体不是合法的 JSON") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "PARAM_ERROR", "请求体应为 JSON 对象")
    return payload


def _string(payload: dict[str, Any], name: str, max_len: int, *, required: bool = True) -> str:
    value = payload.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(
                400, "PARAM_ERROR", f"输入源“/body/{name}”映射到字段“{name}”必填性规则校验失败"
            )
        return ""
    if not isinstance(value, str):
        raise ApiError(400, "PARAM_ERROR", f"{name} 应为字符串")
    if len(value) > max_len:
        raise ApiError(400, "PARAM_ERROR", f"{name} 长度超过 {max_len}")
    return value


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ApiError(400, "PARAM_ERROR", f"{name} 应为正整数（单位：分）")
    return value


def _currency(amount: dict[str, Any]) -> str:
    currency = amount.get("currency", "CNY")
    if currency != "CNY":
        raise ApiError(400, "PARAM_ERROR", "amount.currency 仅支持 CNY")
    return "CNY"


def _check_merchant(sb: Sandbox, mchid: Any, appid: Any = None) -> None:
    if mchid != sb.config.wechat.mchid:
        raise ApiError(400, "MCH_NOT_EXISTS", "商户号不存在或与请求头不一致")
    if appid is not None and appid != sb.config.wechat.appid:
        raise ApiError(400, "APPID_MCHID_NOT_MATCH", "appid 和 mchid 不匹配")


# --- objects -------------------------------------------------------------------------------------


def trade_state(trade: Trade, now: dt.datetime) -> str:
    view = trade.view(now)
    if view == View.PAID:
        return "REFUND" if trade.refunds else "SUCCESS"
    if view == View.CLOSED:
        return "CLOSED"
    # time_expire is the last moment to pay, not a close: an expired trade stays NOTPAY until
    # the merchant closes it (§2.1).
    return "NOTPAY"


def transaction(sb: Sandbox, trade: Trade, now: dt.datetime) -> dict[str, Any]:
    state = trade_state(trade, now)
    obj: dict[str, Any] = {
        "appid": sb.config.wechat.appid,
        "mchid": sb.config.wechat.mchid,
        "out_trade_no": trade.out_trade_no,
        "trade_state": state,
        "trade_state_desc": TRADE_STATE_DESC[state],
        "attach": trade.attach,
        "amount": {"total": trade.amount, "currency": trade.currency},
    }
    if trade.status == Status.PAID and trade.paid_at is not None:
        obj |= {
            "transaction_id": trade.trade_no,
            "trade_type": bills.wechat_trade_type(trade.kind),
            "bank_type": "OTHERS",
            "success_time": timeutil.rfc3339(trade.paid_at),
            "payer": {"openid": trade.buyer_id},
            "amount": {
                "total": trade.amount,
                "payer_total": trade.amount,
                "currency": trade.currency,
                "payer_currency": trade.currency,
            },
            "promotion_detail": [],
        }
    return obj


def refund_object(trade: Trade, refund: Refund) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "create_time": timeutil.rfc3339(refund.created_at),
        "status": str(refund.status),
        "funds_account": "AVAILABLE",
        "amount": {
            "total": trade.amount,
            "refund": refund.amount,
            "from": [],
            "payer_total": trade.amount,
            "payer_refund": refund.amount,
            "settlement_refund": refund.amount,
            "settlement_total": trade.amount,
            "discount_refund": 0,
            "currency": trade.currency,
            "refund_fee": 0,
        },
        "promotion_detail": [],
    }
    if refund.success_at is not None:
        obj["success_time"] = timeutil.rfc3339(refund.success_at)
    return obj


# --- handlers ------------------------------------------------------------------------------------


def prepay(sb: Sandbox, req: Request, trade_type: str) -> Response:
    """POST /v3/pay/transactions/{native,h5,app,jsapi}."""
    try:
        payload = _json_body(req)
        _check_merchant(sb, payload.get("mchid"), payload.get("appid"))
        description = _string(payload, "description", 127)
        out_trade_no = _string(payload, "out_trade_no", 32)
        if not _OUT_TRADE_NO.match(out_trade_no):
            raise ApiError(400, "PARAM_ERROR", "out_trade_no 应为 6-32 位数字、大小写字母或_-|*")
        notify_url = _string(payload, "notify_url", 256)
        if not notify_url.startswith(("https://", "http://")) or "?" in notify_url:
            raise ApiError(400, "PARAM_ERROR", "notify_url 必须是不带查询串的 http(s) 地址")
        amount = payload.get("amount")
        if not isinstance(amount, dict):
            raise ApiError(400, "PARAM_ERROR", "amount 必填")
        total = _positive_int(amount.get("total"), "amount.total")
        currency = _currency(amount)
        attach = _string(payload, "attach", 128, required=False)
        time_expire = _string(payload, "time_expire", 64, required=False)
        now = timeutil.now()
        try:
            expires_at = timeutil.parse_rfc3339(time_expire) if time_expire else None
        except ValueError as exc:
            raise ApiError(
                400, "PARAM_ERROR", "time_expire 应为 RFC 3339 格式，如 2018-06-08T10:34:56+08:00"
            ) from exc
        openid = ""
        if trade_type == "JSAPI":
            payer = payload.get("payer")
            openid = payer.get("openid", "") if isinstance(payer, dict) else ""
            if not openid:
                raise ApiError(400, "PARAM_ERROR", "JSAPI 下单 payer.openid 必填")
        if trade_type == "H5":
            scene = payload.get("scene_info")
            h5_info = scene.get("h5_info") if isinstance(scene, dict) else None
            if not (
                isinstance(scene, dict)
                and scene.get("payer_client_ip")
                and isinstance(h5_info, dict)
                and h5_info.get("type")
            ):
                raise ApiError(
                    400,
                    "PARAM_ERROR",
                    "H5 下单 scene_info.payer_client_ip 与 scene_info.h5_info.type 必填",
                )
        fingerprint = (trade_type, total, currency, description)
        with sb.ledger.lock:
            trade = sb.ledger.get(CHANNEL, out_trade_no)
            if trade is not None:
                view = trade.view(now)
                if view == View.PAID:
                    raise ApiError(400, "ORDERPAID", "该订单已支付")
                if view == View.CLOSED:
                    raise ApiError(400, "ORDER_CLOSED", "该订单已关闭")
                if trade.fingerprint != fingerprint:
                    raise ApiError(403, "OUT_TRADE_NO_USED", "商户订单号重复，且参数与原订单不一致")
            else:
                trade = Trade(
                    channel=CHANNEL,
                    out_trade_no=out_trade_no,
                    trade_no="",  # a transaction_id exists only once paid
                    kind=trade_type,
                    amount=total,
                    currency=currency,
                    subject=description,
                    notify_url=notify_url,
                    created_at=now,
                    expires_at=expires_at,
                    fingerprint=fingerprint,
                    attach=attach,
                    prepay_id="wx"
                    + now.astimezone(timeutil.CHINA).strftime("%d%H%M%S")
                    + secrets.token_hex(13),
                    buyer_id=openid,
                )
                sb.ledger.add(trade)
            prepay_id = trade.prepay_id
    except ApiError as exc:
        return error(sb, exc)
    if sb.faults.draw("prepay_timeout"):
        return Response(0, hang_seconds=sb.faults.number("hang_seconds"), drop_connection=True)
    cashier = sb.cashier_url(CHANNEL, out_trade_no)
    if trade_type == "NATIVE":
        return signed_json(sb, 200, {"code_url": cashier})
    if trade_type == "H5":
        return signed_json(sb, 200, {"h5_url": cashier})
    return signed_json(sb, 200, {"prepay_id": prepay_id})


def _query_faults(sb: Sandbox) -> Response | None:
    if sb.faults.draw("query_error"):
        return unsigned_error(500, "SYSTEM_ERROR", "sandbox fault: query_error")
    if sb.faults.draw("query_timeout"):
        time.sleep(sb.faults.number("hang_seconds"))
    return None


def query(
    sb: Sandbox, req: Request, *, out_trade_no: str = "", transaction_id: str = ""
) -> Response:
    """GET /v3/pay/transactions/out-trade-no/{otn}?mchid= or /id/{transaction_id}?mchid=."""
    try:
        _check_merchant(sb, req.query_params().get("mchid"))
    except ApiError as exc:
        return error(sb, exc)
    fault = _query_faults(sb)
    if fault is not None:
        return fault
    now = timeutil.now()
    with sb.ledger.lock:
        trade = (
            sb.ledger.get(CHANNEL, out_trade_no)
            if out_trade_no
            else sb.ledger.by_trade_no(CHANNEL, transaction_id)
        )
        if trade is None:
            return error(sb, ApiError(404, "ORDER_NOT_EXIST", "订单不存在"))
        payload = transaction(sb, trade, now)
    return signed_json(sb, 200, payload)


def close(sb: Sandbox, req: Request, out_trade_no: str) -> Response:
    """POST /v3/pay/transactions/out-trade-no/{otn}/close → 204."""
    try:
        payload = _json_body(req)
        _check_merchant(sb, payload.get("mchid"))
        if sb.faults.draw("close_error"):
            return unsigned_error(500, "SYSTEM_ERROR", "sandbox fault: close_error")
        now = timeutil.now()
        with sb.ledger.lock:
            trade = sb.ledger.get(CHANNEL, out_trade_no)
            if trade is None:
                raise ApiError(404, "ORDER_NOT_EXIST", "订单不存在")
            view = trade.view(now)
            if view == View.PAID:
                raise ApiError(400, "ORDERPAID", "订单已支付，不能关单")
            if view in (View.NOTPAY, View.EXPIRED):
                if sb.faults.draw("ignore_close"):
                    trade.close_ignored = True  # answer 204, keep it payable
                else:
                    trade.status = Status.CLOSED
                    trade.closed_at = now
    except ApiError as exc:
        return error(sb, exc)
    return signed_empty(sb)


def refund(sb: Sandbox, req: Request) -> Response:
    """POST /v3/refund/domestic/refunds: accepted as PROCESSING, SUCCESS a moment later."""
    try:
        payload = _json_body(req)
        out_refund_no = _string(payload, "out_refund_no", 64)
        if not _OUT_REFUND_NO.match(out_refund_no):
            raise ApiError(400, "PARAM_ERROR", "out_refund_no 格式错误")
        transaction_id = _string(payload, "transaction_id", 32, required=False)
        out_trade_no = _string(payload, "out_trade_no", 32, required=False)
        if not transaction_id and not out_trade_no:
            raise ApiError(400, "PARAM_ERROR", "transaction_id 与 out_trade_no 必填其一")
        amount = payload.get("amount")
        if not isinstance(amount, dict):
            raise ApiError(400, "PARAM_ERROR", "amount 必填")
        refund_amount = _positive_int(amount.get("refund"), "amount.refund")
        total = _positive_int(amount.get("total"), "amount.total")
        _currency(amount)
        notify_url = _string(payload, "notify_url", 256, required=False)
        reason = _string(payload, "reason", 80, required=False)
        if sb.faults.draw("refund_error"):
            return unsigned_error(500, "SYSTEM_ERROR", "sandbox fault: refund_error")
        now = timeutil.now()
        with sb.ledger.lock:
            trade = (
                sb.ledger.by_trade_no(CHANNEL, transaction_id)
                if transaction_id
                else sb.ledger.get(CHANNEL, out_trade_no)
            )
            if trade is None:
                raise ApiError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
            found = sb.ledger.find_refund(CHANNEL, out_refund_no)
            if found is not None:
                same_trade, existing = found
                # The merchant's idempotency key: the same request again returns the same refund.
                if same_trade is not trade or existing.amount != refund_amount:
                    raise ApiError(400, "INVALID_REQUEST", "out_refund_no 已用于其他退款请求")
                return signed_json(sb, 200, refund_object(trade, existing))
            if trade.status != Status.PAID:
                raise ApiError(400, "INVALID_REQUEST", "订单未支付，不能退款")
            if total != trade.amount:
                raise ApiError(400, "INVALID_REQUEST", "amount.total 与原订单金额不一致")
            if trade.refunded + refund_amount > trade.amount:
                raise ApiError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
            if sb.faults.draw("refund_reject"):
                raise ApiError(403, "NOT_ENOUGH", "基本账户余额不足，请充值后重新发起")
            new = Refund(
                out_refund_no=out_refund_no,
                refund_id=new_refund_id(),
                amount=refund_amount,
                status=RefundStatus.PROCESSING,
                created_at=now,
                reason=reason,
                notify_url=notify_url,
            )
            draw_bill_faults(new, sb.faults)
            trade.refunds.append(new)
            payload_out = refund_object(trade, new)
        sb.notifier.call_later(sb.config.refund_seconds, lambda: _complete_refund(sb, trade, new))
    except ApiError as exc:
        return error(sb, exc)
    return signed_json(sb, 200, payload_out)


def _complete_refund(sb: Sandbox, trade: Trade, refund_: Refund) -> None:
    with sb.ledger.lock:
        if refund_.status != RefundStatus.PROCESSING:
            return
        refund_.status = RefundStatus.SUCCESS
        refund_.success_at = timeutil.now()
        if refund_.notify_url:
            sb.notifier.submit(refund_delivery(sb, trade, refund_))


def refund_query(sb: Sandbox, req: Request, out_refund_no: str) -> Response:
    """GET /v3/refund/domestic/refunds/{out_refund_no}."""
    fault = _query_faults(sb)
    if fault is not None:
        return fault
    with sb.ledger.lock:
        found = sb.ledger.find_refund(CHANNEL, out_refund_no)
        if found is None:
            return error(sb, ApiError(404, "RESOURCE_NOT_EXISTS", "退款单不存在"))
        payload = refund_object(*found)
    return signed_json(sb, 200, payload)


def tradebill(sb: Sandbox, req: Request) -> Response:
    """GET /v3/bill/tradebill?bill_date=YYYY-MM-DD&bill_type=ALL|SUCCESS|REFUND[&tar_type=GZIP]."""
    params = req.query_params()
    bill_date = params.get("bill_date", "")
    bill_type = params.get("bill_type", "ALL") or "ALL"
    tar_type = params.get("tar_type", "")
    try:
        if len(bill_date) != 10:
            raise ValueError(bill_date)
        period = bills.parse_period(bill_date)
    except ValueError:
        return error(sb, ApiError(400, "PARAM_ERROR", "bill_date 格式应为 YYYY-MM-DD"))
    if bill_type not in ("ALL", "SUCCESS", "REFUND"):
        return error(sb, ApiError(400, "PARAM_ERROR", "bill_type 取值 ALL/SUCCESS/REFUND"))
    if tar_type not in ("", "GZIP"):
        return error(sb, ApiError(400, "PARAM_ERROR", "tar_type 仅支持 GZIP"))
    if period.start > timeutil.china_date(timeutil.now()) or sb.faults.draw("bill_not_ready"):
        return error(sb, ApiError(400, "NO_STATEMENT_EXIST", "账单文件不存在"))
    filename = f"{period.label}_{bill_type}.csv"
    prewritten = sb.config.prewritten_bill(f"wechat_{period.label}_{bill_type}.csv.gz")
    if prewritten and tar_type == "GZIP":
        with open(prewritten + ".sha1", encoding="ascii") as sidecar:
            digest = sidecar.read().strip()
        token = sb.bills.issue(
            b"", "application/octet-stream", filename, BILL_URL_TTL_SECONDS, prewritten
        )
    else:
        with sb.ledger.lock:
            content = bills.wechat_tradebill(
                appid=sb.config.wechat.appid,
                mchid=sb.config.wechat.mchid,
                bill_type=bill_type,
                period=period,
                trades=sb.ledger.all(),
            )
        # The hash is over the original file; with tar_type=GZIP the download is its gzip.
        digest = hashlib.sha1(content).hexdigest()  # noqa: S324 - the protocol's checksum
        download = gzip.compress(content) if tar_type == "GZIP" else content
        token = sb.bills.issue(download, "application/octet-stream", filename, BILL_URL_TTL_SECONDS)
    return signed_json(
        sb,
        200,
        {
            "hash_type": "SHA1",
            "hash_value": digest,
            "download_url": f"{sb.base_url}/v3/billdownload/file?token={quote(token)}",
        },
    )


def bill_download(sb: Sandbox, req: Request) -> Response:
    """GET /v3/billdownload/file?token=… (signed request, unsigned answer, as the real one)."""
    found = sb.bills.get(req.query_params().get("token", ""))
    if found is None:
        return unsigned_error(404, "RESOURCE_NOT_EXISTS", "下载链接不存在或已过期")
    return Response(
        200,
        found.content,
        [("Content-Type", found.content_type), _request_id()],
        body_path=found.path,
    )


# --- notifications -------------------------------------------------------------------------------


def _delivery(
    sb: Sandbox,
    trade: Trade,
    *,
    url: str,
    event_type: str,
    summary: str,
    original_type: str,
    plaintext: dict[str, Any],
    kind: str,
    out_refund_no: str = "",
) -> Delivery:
    event_id = str(uuid.uuid4())
    nonce = secrets.token_hex(6)  # 12 characters, as WeChat sends
    resource = {
        "original_type": original_type,
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": crypto.aes_gcm_encrypt(
            key=sb.config.wechat.apiv3_key,
            nonce=nonce,
            associated_data=original_type,
            plaintext=json.dumps(plaintext, ensure_ascii=False, separators=(",", ":")).encode(),
        ),
        "associated_data": original_type,
        "nonce": nonce,
    }
    body = json.dumps(
        {
            "id": event_id,
            "create_time": timeutil.rfc3339(timeutil.now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": resource,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()

    def render() -> Rendered:
        # Same event and body on every re-send; timestamp, nonce and signature are fresh.
        headers = {"Content-Type": "application/json", "User-Agent": "Mozilla/4.0"}
        headers.update(signature_headers(sb, body))
        return Rendered(body, headers)

    return Delivery(
        notify_id=event_id,
        channel=CHANNEL,
        kind=kind,
        out_trade_no=trade.out_trade_no,
        out_refund_no=out_refund_no,
        url=url,
        render=render,
        acknowledges=lambda status, _body: status in (200, 204),
        schedule=sb.config.notify_schedule(CHANNEL),
    )


def paid_delivery(sb: Sandbox, trade: Trade) -> Delivery:
    """TRANSACTION.SUCCESS for a just-paid trade. Caller holds the ledger lock."""
    plaintext = transaction(sb, trade, timeutil.now())
    plaintext["trade_state"] = "SUCCESS"  # the event is about the payment itself
    plaintext["trade_state_desc"] = TRADE_STATE_DESC["SUCCESS"]
    return _delivery(
        sb,
        trade,
        url=trade.notify_url,
        event_type="TRANSACTION.SUCCESS",
        summary="支付成功",
        original_type="transaction",
        plaintext=plaintext,
        kind="payment",
    )


def refund_delivery(sb: Sandbox, trade: Trade, refund_: Refund) -> Delivery:
    assert refund_.success_at is not None
    plaintext = {
        "mchid": sb.config.wechat.mchid,
        "transaction_id": trade.trade_no,
        "out_trade_no": trade.out_trade_no,
        "refund_id": refund_.refund_id,
        "out_refund_no": refund_.out_refund_no,
        "refund_status": "SUCCESS",
        "success_time": timeutil.rfc3339(refund_.success_at),
        "user_received_account": "支付用户零钱",
        "amount": {
            "total": trade.amount,
            "refund": refund_.amount,
            "payer_total": trade.amount,
            "payer_refund": refund_.amount,
        },
    }
    return _delivery(
        sb,
        trade,
        url=refund_.notify_url,
        event_type="REFUND.SUCCESS",
        summary="退款成功",
        original_type="refund",
        plaintext=plaintext,
        kind="refund",
        out_refund_no=refund_.out_refund_no,
    )
