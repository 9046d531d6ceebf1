"""WeChat Pay v3 adapter, no server: signing, answer verification, mapping, notifies, bills.

The WeChat side signs with wechatpayv3's ``rsa_sign`` (platform private key), and our request
and app signatures are compared with the SDK's ``build_authorization`` and ``WeChatPay.sign``
(PKCS#1 v1.5 is deterministic). Notifications we build are first checked with the SDK's own
``WeChatPay.callback``. What the SDK cannot do: it has no AES-GCM *encrypt* helper (only
``aes_decrypt``), so notification resources are encrypted here with ``cryptography``'s AESGCM;
and it does not check notification timestamps, so freshness is only checked on our side.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from freezegun import freeze_time
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import aes_decrypt, build_authorization
from wechatpayv3.utils import load_private_key as sdk_load_private_key

from payments.gateways import signing
from payments.gateways.base import (
    Client,
    CloseOutcome,
    GatewayUnavailable,
    NotificationRejected,
    PrepayOutcome,
    PrepayRequest,
    RefundOutcome,
    RefundRequest,
    TradeOutcome,
)
from payments.gateways.wechatpay import WechatPayGateway, parse_trade_bill
from tests.gateways.gateway_doubles import CannedTransport, make_response

Factory = Callable[..., tuple[WechatPayGateway, CannedTransport]]
Signer = Callable[..., dict[str, str]]
DEADLINE = dt.datetime(2024, 5, 1, 4, 30, tzinfo=dt.UTC)
AUTH_RE = re.compile(
    r'^WECHATPAY2-SHA256-RSA2048 mchid="(?P<mchid>[^"]+)",nonce_str="(?P<nonce>[^"]+)",'
    r'signature="(?P<signature>[^"]+)",timestamp="(?P<timestamp>\d+)",serial_no="(?P<serial>[^"]+)"$'
)


def prepay_request(client: Client, **overrides: Any) -> PrepayRequest:
    fields: dict[str, Any] = {
        "out_trade_no": "OTN0001",
        "amount": 8888,
        "currency": "CNY",
        "description": "两件 T 恤",
        "client": client,
        "expires_at": DEADLINE,
        "notify_url": "https://shop.test/callbacks/wechat",
        "return_url": "https://shop.test/orders/1/return",
        "payer_client_ip": "203.0.113.7",
    }
    fields.update(overrides)
    return PrepayRequest(**fields)


def refund_request(**overrides: Any) -> RefundRequest:
    fields: dict[str, Any] = {
        "out_trade_no": "OTN0001",
        "out_refund_no": "RF0001",
        "amount": 1000,
        "total_amount": 8888,
        "currency": "CNY",
        "reason": "退货",
        "notify_url": "https://shop.test/callbacks/wechat",
    }
    fields.update(overrides)
    return RefundRequest(**fields)


def body_bytes(request: requests.PreparedRequest) -> bytes:
    body = request.body or b""
    return body.encode() if isinstance(body, str) else body


def assert_merchant_signed(request: requests.PreparedRequest, creds: dict[str, Any]) -> None:
    match = AUTH_RE.match(request.headers["Authorization"])
    assert match, request.headers["Authorization"]
    wx = creds["wechat"]
    assert match["mchid"] == wx["mchid"]
    assert match["serial"] == wx["merchant_serial_no"]
    assert request.headers["Wechatpay-Serial"] == wx["platform_public_key_id"]
    message = (
        f"{request.method}\n{request.path_url}\n{match['timestamp']}\n{match['nonce']}\n".encode()
        + body_bytes(request)
        + b"\n"
    )
    public = signing.load_public_key(wx["merchant_public_key_pem"])
    assert signing.rsa_verify(public, message, match["signature"])


def signed_json(signer: Signer, status: int, data: Any, **sign_kwargs: Any) -> requests.Response:
    text = json.dumps(data, ensure_ascii=False) if data is not None else ""
    headers = signer(text, **sign_kwargs)
    headers["Content-Type"] = "application/json"
    return make_response(status, text.encode(), headers)


def replying(signer: Signer, status: int, data: Any, **sign_kwargs: Any) -> Callable[..., Any]:
    return lambda request: signed_json(signer, status, data, **sign_kwargs)


def _raise(exc: Exception) -> Callable[..., Any]:
    def handler(request: requests.PreparedRequest) -> requests.Response:
        raise exc

    return handler


# --- request signing and prepay ---------------------------------------------------------------


@freeze_time("2024-05-01 04:00:00")
def test_authorization_equals_the_sdks(wechat_factory: Factory, creds: dict[str, Any]) -> None:
    gateway, _ = wechat_factory()
    path = "/v3/pay/transactions/out-trade-no/OTN0001?mchid=" + creds["wechat"]["mchid"]
    ours = gateway.authorization("GET", path, b"")
    match = AUTH_RE.match(ours)
    assert match
    sdk_key = sdk_load_private_key(creds["wechat"]["merchant_private_key_pem"])
    theirs = build_authorization(
        path,
        "GET",
        creds["wechat"]["mchid"],
        creds["wechat"]["merchant_serial_no"],
        sdk_key,
        nonce_str=match["nonce"],
    )
    assert ours == theirs
    body = '{"mchid":"1","amount":{"total":1}}'
    ours = gateway.authorization("POST", "/v3/x", body.encode())
    match = AUTH_RE.match(ours)
    assert match
    assert ours == build_authorization(
        "/v3/x",
        "POST",
        creds["wechat"]["mchid"],
        creds["wechat"]["merchant_serial_no"],
        sdk_key,
        data=body,
        nonce_str=match["nonce"],
    )


def test_native_prepay(
    wechat_factory: Factory, wechat_signed_headers: Signer, creds: dict[str, Any]
) -> None:
    gateway, transport = wechat_factory(
        replying(wechat_signed_headers, 200, {"code_url": "weixin://wxpay/bizpayurl?pr=abc"})
    )
    result = gateway.prepay(prepay_request(Client.PC))
    assert result.outcome == PrepayOutcome.CREATED
    assert result.action is not None
    assert result.action.as_dict() == {"type": "qr", "code_url": "weixin://wxpay/bizpayurl?pr=abc"}
    (sent,) = transport.sent
    assert transport.timeouts == [(1.0, 2.0)]
    assert sent.method == "POST"
    assert sent.url == "https://wechat.test/v3/pay/transactions/native"
    assert_merchant_signed(sent, creds)
    body = json.loads(body_bytes(sent))
    assert body == {
        "appid": creds["wechat"]["appid"],
        "mchid": creds["wechat"]["mchid"],
        "description": "两件 T 恤",
        "out_trade_no": "OTN0001",
        "time_expire": "2024-05-01T12:30:00+08:00",
        "notify_url": "https://shop.test/callbacks/wechat",
        "amount": {"total": 8888, "currency": "CNY"},
    }


def test_h5_prepay(
    wechat_factory: Factory, wechat_signed_headers: Signer, creds: dict[str, Any]
) -> None:
    gateway, transport = wechat_factory(
        replying(wechat_signed_headers, 200, {"h5_url": "https://wx.tenpay.test/h5?x=1"})
    )
    result = gateway.prepay(prepay_request(Client.WAP))
    assert result.outcome == PrepayOutcome.CREATED
    assert result.action is not None
    assert result.action.as_dict() == {"type": "redirect", "url": "https://wx.tenpay.test/h5?x=1"}
    (sent,) = transport.sent
    assert urlsplit(sent.url).path == "/v3/pay/transactions/h5"
    assert json.loads(body_bytes(sent))["scene_info"] == {
        "payer_client_ip": "203.0.113.7",
        "h5_info": {"type": "Wap"},
    }


def test_app_prepay_params_equal_the_sdks_signature(
    wechat_factory: Factory, wechat_signed_headers: Signer, creds: dict[str, Any]
) -> None:
    gateway, transport = wechat_factory(
        replying(wechat_signed_headers, 200, {"prepay_id": "wx201410272009395522657a690389285100"})
    )
    result = gateway.prepay(prepay_request(Client.APP))
    assert result.outcome == PrepayOutcome.CREATED
    assert result.action is not None and result.action.type == "app"
    params = result.action.params
    assert urlsplit(transport.sent[0].url).path == "/v3/pay/transactions/app"
    assert params["appid"] == creds["wechat"]["appid"]
    assert params["partnerid"] == creds["wechat"]["mchid"]
    assert params["prepayid"] == "wx201410272009395522657a690389285100"
    assert params["package"] == "Sign=WXPay"
    sdk = sdk_client(creds)
    expected = sdk.sign(
        [params["appid"], params["timestamp"], params["noncestr"], params["prepayid"]]
    )
    assert params["sign"] == expected


@pytest.mark.parametrize(
    ("status", "code", "signed", "outcome"),
    [
        (400, "ORDERPAID", True, PrepayOutcome.REJECTED),
        (400, "INVALID_REQUEST", True, PrepayOutcome.REJECTED),
        (400, "PARAM_ERROR", True, PrepayOutcome.REJECTED),
        (400, "ORDERPAID", False, PrepayOutcome.UNKNOWN),  # unsigned: could be anyone
        (429, "FREQUENCY_LIMITED", True, PrepayOutcome.UNKNOWN),
        (500, "SYSTEM_ERROR", True, PrepayOutcome.UNKNOWN),
        (502, "", False, PrepayOutcome.UNKNOWN),
    ],
)
def test_prepay_failures(
    wechat_factory: Factory,
    wechat_signed_headers: Signer,
    status: int,
    code: str,
    signed: bool,
    outcome: PrepayOutcome,
) -> None:
    data = {"code": code, "message": "no"}
    if signed:
        handler = replying(wechat_signed_headers, status, data)
    else:

        def handler(request: requests.PreparedRequest) -> requests.Response:
            return make_response(status, json.dumps(data), {"Content-Type": "application/json"})

    gateway, _ = wechat_factory(handler)
    result = gateway.prepay(prepay_request(Client.PC))
    assert result.outcome == outcome
    assert result.error


def test_only_cny(wechat_factory: Factory) -> None:
    gateway, transport = wechat_factory()
    assert gateway.prepay(prepay_request(Client.PC, currency="USD")).outcome == (
        PrepayOutcome.REJECTED
    )
    assert transport.sent == []


# --- answers we must not trust ----------------------------------------------------------------

PAID = {
    "appid": "wxd678efh567hg6787",
    "mchid": "1230000109",
    "out_trade_no": "OTN0001",
    "transaction_id": "1217752501201407033233368018",
    "trade_type": "NATIVE",
    "trade_state": "SUCCESS",
    "trade_state_desc": "支付成功",
    "success_time": "2024-05-01T12:00:01+08:00",
    "amount": {"total": 8888, "payer_total": 8888, "currency": "CNY", "payer_currency": "CNY"},
}


@pytest.mark.parametrize(
    "case", ["timeout", "connect", "http500", "unsigned", "bad_signature", "wrong_serial", "probe"]
)
def test_untrusted_answers_are_unknown(
    wechat_factory: Factory, wechat_signed_headers: Signer, creds: dict[str, Any], case: str
) -> None:
    def tampered(request: requests.PreparedRequest) -> requests.Response:
        response = signed_json(wechat_signed_headers, 200, PAID)
        response._content = response.content.replace(b"SUCCESS", b"NOTPAY")
        return response

    def probe(request: requests.PreparedRequest) -> requests.Response:
        response = signed_json(wechat_signed_headers, 200, PAID)
        response.headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + "A" * 300
        return response

    handlers: dict[str, Callable[..., Any]] = {
        "timeout": _raise(requests.ReadTimeout("slow")),
        "connect": _raise(requests.ConnectionError("refused")),
        "http500": lambda r: make_response(500, b"{}"),
        "unsigned": lambda r: make_response(200, json.dumps(PAID).encode()),
        "bad_signature": tampered,
        "wrong_serial": replying(wechat_signed_headers, 200, PAID, serial="PUB_KEY_ID_OTHER"),
        "probe": probe,
    }
    gateway, _ = wechat_factory(handlers[case])
    status = gateway.query("OTN0001")
    assert status.outcome == TradeOutcome.UNKNOWN
    assert status.error
    assert gateway.close("OTN0001").outcome == CloseOutcome.UNKNOWN
    assert gateway.refund(refund_request()).outcome == RefundOutcome.UNKNOWN
    assert (
        gateway.refund_query(out_trade_no="OTN0001", out_refund_no="RF0001").outcome
        == RefundOutcome.UNKNOWN
    )
    assert gateway.prepay(prepay_request(Client.PC)).outcome == PrepayOutcome.UNKNOWN


# --- query / close ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        ("SUCCESS", TradeOutcome.PAID),
        ("REFUND", TradeOutcome.PAID),
        ("NOTPAY", TradeOutcome.NOT_PAID),
        ("USERPAYING", TradeOutcome.NOT_PAID),
        ("CLOSED", TradeOutcome.CLOSED),
        ("REVOKED", TradeOutcome.CLOSED),
        ("PAYERROR", TradeOutcome.CLOSED),
        ("MYSTERY", TradeOutcome.UNKNOWN),
    ],
)
def test_query_states(
    wechat_factory: Factory,
    wechat_signed_headers: Signer,
    creds: dict[str, Any],
    state: str,
    outcome: TradeOutcome,
) -> None:
    gateway, transport = wechat_factory(
        replying(wechat_signed_headers, 200, {**PAID, "trade_state": state})
    )
    result = gateway.query("OTN0001")
    assert result.outcome == outcome
    assert result.amount == 8888
    assert result.currency == "CNY"
    assert result.merchant_id == "1230000109"
    assert result.gateway_trade_no == "1217752501201407033233368018"
    assert result.paid_at == dt.datetime(2024, 5, 1, 4, 0, 1, tzinfo=dt.UTC)
    (sent,) = transport.sent
    assert sent.method == "GET"
    assert sent.path_url == f"/v3/pay/transactions/out-trade-no/OTN0001?mchid={gateway.mchid}"
    assert_merchant_signed(sent, creds)
    assert not sent.body


def test_query_not_found(wechat_factory: Factory, wechat_signed_headers: Signer) -> None:
    gateway, _ = wechat_factory(
        replying(wechat_signed_headers, 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
    )
    assert gateway.query("OTN0001").outcome == TradeOutcome.NOT_FOUND


def test_query_about_another_trade_is_unknown(
    wechat_factory: Factory, wechat_signed_headers: Signer
) -> None:
    gateway, _ = wechat_factory(replying(wechat_signed_headers, 200, {**PAID, "out_trade_no": "X"}))
    assert gateway.query("OTN0001").outcome == TradeOutcome.UNKNOWN


@pytest.mark.parametrize(
    ("status", "data", "outcome"),
    [
        (204, None, CloseOutcome.CLOSED),
        (400, {"code": "ORDERPAID", "message": "已支付"}, CloseOutcome.PAID),
        (404, {"code": "ORDER_NOT_EXIST", "message": "不存在"}, CloseOutcome.CLOSED),
        (500, {"code": "SYSTEM_ERROR", "message": "稍后再试"}, CloseOutcome.UNKNOWN),
    ],
)
def test_close(
    wechat_factory: Factory,
    wechat_signed_headers: Signer,
    creds: dict[str, Any],
    status: int,
    data: Any,
    outcome: CloseOutcome,
) -> None:
    gateway, transport = wechat_factory(replying(wechat_signed_headers, status, data))
    assert gateway.close("OTN0001").outcome == outcome
    (sent,) = transport.sent
    assert sent.path_url == "/v3/pay/transactions/out-trade-no/OTN0001/close"
    assert json.loads(body_bytes(sent)) == {"mchid": creds["wechat"]["mchid"]}
    assert_merchant_signed(sent, creds)


# --- refunds ----------------------------------------------------------------------------------


def refund_object(status: str) -> dict[str, Any]:
    return {
        "refund_id": "50000000382019052709732678859",
        "out_refund_no": "RF0001",
        "transaction_id": "1217752501201407033233368018",
        "out_trade_no": "OTN0001",
        "channel": "ORIGINAL",
        "status": status,
        "amount": {"total": 8888, "refund": 1000, "payer_total": 8888, "payer_refund": 1000},
    }


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("SUCCESS", RefundOutcome.SUCCEEDED),
        ("PROCESSING", RefundOutcome.PENDING),
        ("CLOSED", RefundOutcome.FAILED),
        ("ABNORMAL", RefundOutcome.FAILED),
    ],
)
def test_refund_statuses(
    wechat_factory: Factory,
    wechat_signed_headers: Signer,
    creds: dict[str, Any],
    status: str,
    outcome: RefundOutcome,
) -> None:
    gateway, transport = wechat_factory(replying(wechat_signed_headers, 200, refund_object(status)))
    result = gateway.refund(refund_request())
    assert result.outcome == outcome
    assert result.amount == 1000
    assert result.gateway_refund_id == "50000000382019052709732678859"
    (sent,) = transport.sent
    assert sent.path_url == "/v3/refund/domestic/refunds"
    assert_merchant_signed(sent, creds)
    assert json.loads(body_bytes(sent)) == {
        "out_trade_no": "OTN0001",
        "out_refund_no": "RF0001",
        "reason": "退货",
        "notify_url": "https://shop.test/callbacks/wechat",
        "amount": {"refund": 1000, "total": 8888, "currency": "CNY"},
    }


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (400, "NOT_ENOUGH", RefundOutcome.FAILED),
        (400, "INVALID_REQUEST", RefundOutcome.FAILED),
        (403, "USER_ACCOUNT_ABNORMAL", RefundOutcome.FAILED),
        (404, "RESOURCE_NOT_EXISTS", RefundOutcome.FAILED),
        (429, "FREQUENCY_LIMITED", RefundOutcome.UNKNOWN),
        (500, "SYSTEM_ERROR", RefundOutcome.UNKNOWN),
    ],
)
def test_refund_rejections(
    wechat_factory: Factory,
    wechat_signed_headers: Signer,
    status: int,
    code: str,
    outcome: RefundOutcome,
) -> None:
    gateway, _ = wechat_factory(
        replying(wechat_signed_headers, status, {"code": code, "message": "x"})
    )
    result = gateway.refund(refund_request())
    assert result.outcome == outcome
    assert code in result.error


def test_refund_query(
    wechat_factory: Factory, wechat_signed_headers: Signer, creds: dict[str, Any]
) -> None:
    gateway, transport = wechat_factory(
        replying(wechat_signed_headers, 200, refund_object("SUCCESS"))
    )
    result = gateway.refund_query(out_trade_no="OTN0001", out_refund_no="RF0001")
    assert result.outcome == RefundOutcome.SUCCEEDED
    assert result.amount == 1000
    (sent,) = transport.sent
    assert sent.method == "GET"
    assert sent.path_url == "/v3/refund/domestic/refunds/RF0001"
    assert_merchant_signed(sent, creds)


def test_refund_query_not_found(wechat_factory: Factory, wechat_signed_headers: Signer) -> None:
    gateway, _ = wechat_factory(
        replying(wechat_signed_headers, 404, {"code": "RESOURCE_NOT_EXISTS", "message": "x"})
    )
    result = gateway.refund_query(out_trade_no="OTN0001", out_refund_no="RF0001")
    assert result.outcome == RefundOutcome.NOT_FOUND


# --- notifications ----------------------------------------------------------------------------


def sdk_client(creds: dict[str, Any]) -> WeChatPay:
    """wechatpayv3 as the merchant, in public-key mode (no network during construction)."""
    wx = creds["wechat"]
    return WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=wx["mchid"],
        private_key=wx["merchant_private_key_pem"],
        cert_serial_no=wx["merchant_serial_no"],
        appid=wx["appid"],
        apiv3_key=wx["apiv3_key"],
        public_key=wx["platform_public_key_pem"],
        public_key_id=wx["platform_public_key_id"],
    )


def encrypt_resource(
    creds: dict[str, Any], plaintext: dict[str, Any], original_type: str
) -> dict[str, str]:
    nonce = "fdasflkja484"
    aad = original_type
    sealed = AESGCM(creds["wechat"]["apiv3_key"].encode()).encrypt(
        nonce.encode(), json.dumps(plaintext, ensure_ascii=False).encode(), aad.encode()
    )
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "original_type": original_type,
        "ciphertext": base64.b64encode(sealed).decode(),
        "nonce": nonce,
        "associated_data": aad,
    }


def transaction(creds: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        **PAID,
        "appid": creds["wechat"]["appid"],
        "mchid": creds["wechat"]["mchid"],
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        **overrides,
    }


def notification(
    creds: dict[str, Any],
    plaintext: dict[str, Any],
    *,
    event_type: str = "TRANSACTION.SUCCESS",
    original_type: str = "transaction",
) -> str:
    envelope = {
        "id": "EV-2018022511223320873",
        "create_time": "2024-05-01T12:00:02+08:00",
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功",
        "resource": encrypt_resource(creds, plaintext, original_type),
    }
    return json.dumps(envelope, ensure_ascii=False)


def test_notification_accepted_by_sdk_and_by_us(
    wechat_factory: Factory, wechat_signed_headers: Signer, creds: dict[str, Any]
) -> None:
    body = notification(creds, transaction(creds))
    headers = wechat_signed_headers(body)
    decrypted = sdk_client(creds).callback(headers, body)
    assert decrypted and decrypted["resource"]["out_trade_no"] == "OTN0001"
    gateway, transport = wechat_factory()
    note = gateway.parse_notification(
        headers=headers, body=body.encode(), content_type="application/json"
    )
    assert note.kind == "payment"
    assert note.event_id == "EV-2018022511223320873"
    assert note.trade is not None
    assert note.trade.outcome == TradeOutcome.PAID
    assert note.trade.amount == 8888
    assert note.trade.merchant_id == creds["wechat"]["mchid"]
    assert note.trade.gateway_trade_no == "1217752501201407033233368018"
    resource = json.loads(body)["resource"]
    assert note.raw == aes_decrypt(
        resource["nonce"],
        resource["ciphertext"],
        resource["associated_data"],
        creds["wechat"]["apiv3_key"],
    )
    assert transport.sent == []


def test_notification_with_django_meta_headers(
    wechat_factory: Factory, wechat_signed_headers: Signer, creds: dict[str, Any]
) -> None:
    body = notification(creds, transaction(creds))
    meta = {
        "HTTP_" + k.upper().replace("-", "_"): v for k, v in wechat_signed_headers(body).items()
    }
    gateway, _ = wechat_factory()
    note = gateway.parse_notification(
        headers=meta, body=body.encode(), content_type="application/json; charset=utf-8"
    )
    assert note.kind == "payment"


def test_refund_notification(
    wechat_factory: Factory, wechat_signed_headers: Signer, creds: dict[str, Any]
) -> None:
    plaintext = {
        "mchid": creds["wechat"]["mchid"],
        "transaction_id": "1217752501201407033233368018",
        "out_trade_no": "OTN0001",
        "refund_id": "50000000382019052709732678859",
        "out_refund_no": "RF0001",
        "refund_status": "SUCCESS",
        "success_time": "2024-05-02T09:00:00+08:00",
        "user_received_account": "招商银行信用卡0403",
        "amount": {"total": 8888, "refund": 1000, "payer_total": 8888, "payer_refund": 1000},
    }
    body = notification(creds, plaintext, event_type="REFUND.SUCCESS", original_type="refund")
    gateway, _ = wechat_factory()
    note = gateway.parse_notification(
        headers=wechat_signed_headers(body), body=body.encode(), content_type="application/json"
    )
    assert note.kind == "refund"
    assert note.refund is not None
    assert note.refund.outcome == RefundOutcome.SUCCEEDED
    assert (note.refund.out_refund_no, note.refund.amount) == ("RF0001", 1000)
    abnormal = notification(
        creds,
        {**plaintext, "refund_status": "ABNORMAL"},
        event_type="REFUND.ABNORMAL",
        original_type="refund",
    )
    note = gateway.parse_notification(
        headers=wechat_signed_headers(abnormal),
        body=abnormal.encode(),
        content_type="application/json",
    )
    assert note.refund is not None and note.refund.outcome == RefundOutcome.FAILED


def _reject(
    gateway: WechatPayGateway,
    headers: dict[str, str],
    body: str | bytes,
    content_type: str = "application/json",
) -> str:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(NotificationRejected) as info:
        gateway.parse_notification(headers=headers, body=raw, content_type=content_type)
    return info.value.code


def test_notification_rejections(
    wechat_factory: Factory, wechat_signed_headers: Signer, creds: dict[str, Any]
) -> None:
    gateway, _ = wechat_factory()
    body = notification(creds, transaction(creds))
    good = wechat_signed_headers(body)

    old = wechat_signed_headers(body, timestamp=int(time.time()) - 301)
    assert _reject(gateway, old, body) == "stale_timestamp"
    future = wechat_signed_headers(body, timestamp=int(time.time()) + 301)
    assert _reject(gateway, future, body) == "stale_timestamp"

    assert _reject(gateway, {**good, "Wechatpay-Serial": "PUB_KEY_ID_OTHER"}, body) == (
        "bad_signature"
    )
    probe = {**good, "Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + good["Wechatpay-Signature"]}
    assert _reject(gateway, probe, body) == "bad_signature"
    for missing in (
        "Wechatpay-Timestamp",
        "Wechatpay-Nonce",
        "Wechatpay-Signature",
        "Wechatpay-Serial",
    ):
        partial = {k: v for k, v in good.items() if k != missing}
        assert _reject(gateway, partial, body) == "bad_signature"

    # Re-serialised after signing: same JSON value, different bytes.
    reserialised = json.dumps(json.loads(body), ensure_ascii=True, indent=1)
    assert _reject(gateway, good, reserialised) == "bad_signature"

    # Tampered ciphertext, re-signed so only the AEAD tag can catch it.
    envelope = json.loads(body)
    sealed = bytearray(base64.b64decode(envelope["resource"]["ciphertext"]))
    sealed[3] ^= 1
    envelope["resource"]["ciphertext"] = base64.b64encode(bytes(sealed)).decode()
    tampered = json.dumps(envelope)
    assert sdk_client(creds).decrypt_callback(wechat_signed_headers(tampered), tampered) is None
    assert _reject(gateway, wechat_signed_headers(tampered), tampered) == "decrypt_failed"
    envelope["resource"]["ciphertext"] = "not base64!"
    garbled = json.dumps(envelope)
    assert _reject(gateway, wechat_signed_headers(garbled), garbled) == "decrypt_failed"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"mchid": "1900000000"}, "wrong_merchant"),
        ({"appid": "wx0000000000000000"}, "wrong_merchant"),
    ],
)
def test_notification_for_another_merchant(
    wechat_factory: Factory,
    wechat_signed_headers: Signer,
    creds: dict[str, Any],
    overrides: dict[str, str],
    code: str,
) -> None:
    gateway, _ = wechat_factory()
    body = notification(creds, transaction(creds, **overrides))
    assert _reject(gateway, wechat_signed_headers(body), body) == code


def test_malformed_notifications(
    wechat_factory: Factory, wechat_signed_headers: Signer, creds: dict[str, Any]
) -> None:
    gateway, _ = wechat_factory()
    for text in ("not json", "[]", '{"resource_type":"encrypt-resource"}'):
        assert _reject(gateway, wechat_signed_headers(text), text) == "malformed"
    plain = json.dumps({"id": "EV-1", "resource_type": "plain", "resource": {}})
    assert _reject(gateway, wechat_signed_headers(plain), plain) == "malformed"
    body = notification(creds, transaction(creds))
    assert _reject(gateway, wechat_signed_headers(body), body, "text/plain") == "malformed"
    big = body + " " * 65536
    assert _reject(gateway, wechat_signed_headers(big), big) == "malformed"
    other = notification(creds, transaction(creds), event_type="TRANSACTION.CLOSED")
    assert _reject(gateway, wechat_signed_headers(other), other) == "unsupported"


def test_acknowledgement_and_return(wechat_factory: Factory) -> None:
    gateway, _ = wechat_factory()
    ok = gateway.acknowledgement(ok=True)
    assert (ok.status, ok.body) == (204, b"")
    fail = gateway.acknowledgement(ok=False, message="签名错误")
    assert fail.status == 500
    assert fail.content_type == "application/json"
    assert json.loads(fail.body) == {"code": "FAIL", "message": "签名错误"}
    info = gateway.verify_return({"out_trade_no": "OTN0001"})
    assert info.out_trade_no == "OTN0001" and not info.verified


# --- bills ------------------------------------------------------------------------------------

BILL = "\r\n".join(
    [
        "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
        "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
        "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,"
        "费率备注",
        "`2024-05-01 12:00:01,`wx1,`1230000109,`0,`,`4200001,`OTN0001,`oUp,`NATIVE,`SUCCESS,"
        "`CMC,`CNY,`88.88,`0.00,`0,`0,`0.00,`0.00,`,`,`两件 T 恤, 白色,`,`0.53000,`0.60%,"
        "`88.88,`0.00,`",
        "`2024-05-01 18:00:00,`wx1,`1230000109,`0,`,`4200001,`OTN0001,`oUp,`NATIVE,`REFUND,"
        "`CMC,`CNY,`0.00,`0.00,`5000001,`RF0001,`10.00,`0.00,`ORIGINAL,`SUCCESS,`两件 T 恤,`,"
        "`-0.06000,`0.60%,`88.88,`10.00,`",
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额",
        "`2,`88.88,`10.00,`0.00,`0.47000,`88.88,`10.00",
    ]
)


def test_parse_trade_bill() -> None:
    lines = parse_trade_bill(BILL)
    assert [(x.kind, x.out_trade_no, x.amount, x.out_refund_no) for x in lines] == [
        ("payment", "OTN0001", 8888, ""),
        ("refund", "OTN0001", 1000, "RF0001"),
    ]
    assert lines[0].gateway_trade_no == "4200001"
    assert lines[0].occurred_at == dt.datetime(2024, 5, 1, 4, 0, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("compressed", [False, True])
def test_fetch_statement(
    wechat_factory: Factory, wechat_signed_headers: Signer, creds: dict[str, Any], compressed: bool
) -> None:
    content = BILL.encode()
    served = gzip.compress(content) if compressed else content

    def handler(request: requests.PreparedRequest) -> requests.Response:
        assert_merchant_signed(request, creds)
        if request.path_url.startswith("/v3/bill/tradebill"):
            assert request.path_url == (
                "/v3/bill/tradebill?bill_date=2024-05-01&bill_type=ALL&tar_type=GZIP"
            )
            return signed_json(
                wechat_signed_headers,
                200,
                {
                    "hash_type": "SHA1",
                    "hash_value": hashlib.sha1(content).hexdigest(),
                    "download_url": "https://files.test/v3/billdownload/file?token=abc",
                },
            )
        assert request.url == "https://files.test/v3/billdownload/file?token=abc"
        return make_response(200, served, {"Content-Type": "application/octet-stream"})

    gateway, _ = wechat_factory(handler)
    assert len(gateway.fetch_statement(dt.date(2024, 5, 1))) == 2


def test_fetch_statement_hash_mismatch(
    wechat_factory: Factory, wechat_signed_headers: Signer
) -> None:
    def handler(request: requests.PreparedRequest) -> requests.Response:
        if request.path_url.startswith("/v3/bill/tradebill"):
            return signed_json(
                wechat_signed_headers,
                200,
                {"hash_type": "SHA1", "hash_value": "0" * 40, "download_url": "https://f.test/x"},
            )
        return make_response(200, BILL.encode())

    gateway, _ = wechat_factory(handler)
    with pytest.raises(GatewayUnavailable):
        gateway.fetch_statement(dt.date(2024, 5, 1))
