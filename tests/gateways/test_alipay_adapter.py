"""Alipay adapter, no server: signing, answer verification, outcome mapping, notifies, bills.

The Alipay side is played by python-alipay-sdk constructed with the sandbox's *Alipay* private
key as its ``app_private_key_string``: its ``sign_data``/``_sign`` sign notifies and response
nodes the way Alipay does. What the SDK cannot do: it has no notion of a response *node*
(we serialise the node ourselves and have the SDK sign those exact characters), and it has no
bill-file builder (the zip is built here by hand).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
from alipay import AliPay

from payments.gateways import signing
from payments.gateways.alipay import AlipayGateway, parse_bill_zip
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
from tests.gateways.gateway_doubles import CannedTransport, alipay_response, make_response

Factory = Callable[..., tuple[AlipayGateway, CannedTransport]]
DEADLINE = dt.datetime(2024, 5, 1, 4, 30, tzinfo=dt.UTC)  # 12:30 in China
FORM = "application/x-www-form-urlencoded; charset=utf-8"


def prepay_request(client: Client, **overrides: Any) -> PrepayRequest:
    fields: dict[str, Any] = {
        "out_trade_no": "OTN0001",
        "amount": 8888,
        "currency": "CNY",
        "description": "两件 T 恤",
        "client": client,
        "expires_at": DEADLINE,
        "notify_url": "https://shop.test/callbacks/alipay",
        "return_url": "https://shop.test/orders/1/return",
    }
    fields.update(overrides)
    return PrepayRequest(**fields)


def form_of(request: requests.PreparedRequest) -> dict[str, str]:
    body = request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return dict(parse_qsl(text, keep_blank_values=True))


def assert_app_signed(params: dict[str, str], creds: dict[str, Any]) -> None:
    """Our request signature: all but sign, empty dropped, sorted, raw values, app key."""
    public = signing.load_public_key(creds["alipay"]["app_public_key_pem"])
    content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v)
    assert signing.rsa_verify(public, content.encode(), params["sign"])


def answering(sdk: AliPay, node: dict[str, Any] | str, **kwargs: Any) -> Callable[..., Any]:
    def handler(request: requests.PreparedRequest) -> requests.Response:
        method = form_of(request)["method"]
        return make_response(200, alipay_response(sdk, method, node, **kwargs))

    return handler


# --- request signing --------------------------------------------------------------------------


def test_request_signature_equals_the_sdks(
    alipay_factory: Factory, merchant_side_sdk: AliPay
) -> None:
    gateway, _ = alipay_factory()
    params = gateway.signed_params(
        "alipay.trade.precreate",
        {"out_trade_no": "A1", "total_amount": "0.01", "subject": "测试"},
        notify_url="https://shop.test/n",
        return_url="",
    )
    assert "return_url" not in params  # empty parameters are not sent (nor signed)
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    # PKCS#1 v1.5 is deterministic, so the SDK must produce the very same signature.
    sdk_signed = dict(parse_qsl(merchant_side_sdk.sign_data(dict(unsigned))))
    assert sdk_signed["sign"] == params["sign"]


def test_precreate_sends_signed_form_and_reads_qr(
    alipay_factory: Factory, alipay_side_sdk: AliPay, creds: dict[str, Any]
) -> None:
    node = {
        "code": "10000",
        "msg": "Success",
        "out_trade_no": "OTN0001",
        "qr_code": "https://qr.test/x",
    }
    gateway, transport = alipay_factory(answering(alipay_side_sdk, node))
    result = gateway.prepay(prepay_request(Client.PC))
    assert result.outcome == PrepayOutcome.CREATED
    assert result.action is not None and result.action.as_dict() == {
        "type": "qr",
        "code_url": "https://qr.test/x",
    }
    (sent,) = transport.sent
    assert sent.method == "POST"
    assert transport.timeouts == [(1.0, 2.0)]
    params = form_of(sent)
    assert_app_signed(params, creds)
    assert params["method"] == "alipay.trade.precreate"
    assert params["sign_type"] == "RSA2"
    assert params["notify_url"] == "https://shop.test/callbacks/alipay"
    biz = json.loads(params["biz_content"])
    assert biz == {
        "out_trade_no": "OTN0001",
        "total_amount": "88.88",
        "subject": "两件 T 恤",
        "time_expire": "2024-05-01 12:30:00",
    }
    assert result.raw.startswith('{"alipay_trade_precreate_response"')


def test_wap_is_a_signed_redirect_without_network(
    alipay_factory: Factory, creds: dict[str, Any]
) -> None:
    gateway, transport = alipay_factory()
    result = gateway.prepay(prepay_request(Client.WAP))
    assert result.outcome == PrepayOutcome.CREATED
    assert result.action is not None and result.action.type == "redirect"
    url = urlsplit(result.action.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://alipay.test/gateway.do"
    params = dict(parse_qsl(url.query, keep_blank_values=True))
    assert_app_signed(params, creds)
    assert params["method"] == "alipay.trade.wap.pay"
    assert params["return_url"] == "https://shop.test/orders/1/return"
    assert params["notify_url"] == "https://shop.test/callbacks/alipay"
    biz = json.loads(params["biz_content"])
    assert biz["product_code"] == "QUICK_WAP_WAY"
    assert biz["time_expire"] == "2024-05-01 12:30:00"
    assert biz["total_amount"] == "88.88"
    assert "sign" not in json.loads(result.raw)
    assert transport.sent == []


def test_app_is_a_signed_order_string_without_network(
    alipay_factory: Factory, creds: dict[str, Any]
) -> None:
    gateway, transport = alipay_factory()
    result = gateway.prepay(prepay_request(Client.APP))
    assert result.outcome == PrepayOutcome.CREATED
    assert result.action is not None and result.action.type == "app"
    params = dict(parse_qsl(result.action.params["order_string"], keep_blank_values=True))
    assert_app_signed(params, creds)
    assert params["method"] == "alipay.trade.app.pay"
    assert "return_url" not in params
    biz = json.loads(params["biz_content"])
    assert biz["product_code"] == "QUICK_MSECURITY_PAY"
    assert biz["time_expire"] == "2024-05-01 12:30:00"
    assert transport.sent == []


def test_only_cny(alipay_factory: Factory) -> None:
    gateway, _ = alipay_factory()
    result = gateway.prepay(prepay_request(Client.PC, currency="USD"))
    assert result.outcome == PrepayOutcome.REJECTED


@pytest.mark.parametrize(
    ("sub_code", "outcome"),
    [
        ("ACQ.TRADE_HAS_SUCCESS", PrepayOutcome.REJECTED),
        ("ACQ.TOTAL_FEE_EXCEED", PrepayOutcome.REJECTED),
        ("ACQ.SYSTEM_ERROR", PrepayOutcome.UNKNOWN),
    ],
)
def test_precreate_business_failures(
    alipay_factory: Factory, alipay_side_sdk: AliPay, sub_code: str, outcome: PrepayOutcome
) -> None:
    node = {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": "x"}
    gateway, _ = alipay_factory(answering(alipay_side_sdk, node))
    result = gateway.prepay(prepay_request(Client.PC))
    assert result.outcome == outcome
    assert sub_code in result.error


# --- answers we must not trust ----------------------------------------------------------------


def _raise(exc: Exception) -> Callable[..., Any]:
    def handler(request: requests.PreparedRequest) -> requests.Response:
        raise exc

    return handler


PAID_NODE = {
    "code": "10000",
    "msg": "Success",
    "trade_no": "2024050122001",
    "out_trade_no": "OTN0001",
    "trade_status": "TRADE_SUCCESS",
    "total_amount": "88.88",
    "send_pay_date": "2024-05-01 12:00:01",
}


@pytest.mark.parametrize(
    "handler_name",
    ["timeout", "connect", "http500", "garbage", "unsigned", "wrong_key", "reserialised", "empty"],
)
def test_untrusted_answers_are_unknown(
    alipay_factory: Factory,
    alipay_side_sdk: AliPay,
    merchant_side_sdk: AliPay,
    handler_name: str,
) -> None:
    compact = json.dumps(PAID_NODE, separators=(",", ":"))
    spaced = json.dumps(PAID_NODE)
    handlers: dict[str, Callable[..., Any]] = {
        "timeout": _raise(requests.ReadTimeout("slow")),
        "connect": _raise(requests.ConnectionError("refused")),
        "http500": lambda r: make_response(500, "oops"),
        "garbage": lambda r: make_response(200, "<html>"),
        "empty": lambda r: make_response(200, ""),
        "unsigned": answering(alipay_side_sdk, PAID_NODE, sign=False),
        # Signed by a key that is not Alipay's (here: the merchant's own).
        "wrong_key": answering(merchant_side_sdk, PAID_NODE),
        # Signed over the compact text but sent re-serialised: the signature must not match.
        "reserialised": lambda r: make_response(
            200,
            f'{{"alipay_trade_query_response":{spaced},"sign":"{alipay_side_sdk._sign(compact)}"}}',
        ),
    }
    gateway, _ = alipay_factory(handlers[handler_name])
    assert gateway.query("OTN0001").outcome == TradeOutcome.UNKNOWN
    assert gateway.close("OTN0001").outcome == CloseOutcome.UNKNOWN
    refund = gateway.refund(refund_request())
    assert refund.outcome == RefundOutcome.UNKNOWN
    assert refund.error
    assert gateway.prepay(prepay_request(Client.PC)).outcome == PrepayOutcome.UNKNOWN


# --- query / close ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("WAIT_BUYER_PAY", TradeOutcome.NOT_PAID),
        ("TRADE_SUCCESS", TradeOutcome.PAID),
        ("TRADE_FINISHED", TradeOutcome.PAID),
        ("TRADE_CLOSED", TradeOutcome.CLOSED),
        ("SOMETHING_NEW", TradeOutcome.UNKNOWN),
    ],
)
def test_query_statuses(
    alipay_factory: Factory, alipay_side_sdk: AliPay, status: str, outcome: TradeOutcome
) -> None:
    gateway, transport = alipay_factory(
        answering(alipay_side_sdk, {**PAID_NODE, "trade_status": status})
    )
    result = gateway.query("OTN0001")
    assert result.outcome == outcome
    assert result.amount == 8888
    assert result.gateway_trade_no == "2024050122001"
    assert result.merchant_id == gateway.app_id
    assert json.loads(form_of(transport.sent[0])["biz_content"]) == {"out_trade_no": "OTN0001"}


def test_query_verifies_the_raw_node_text(alipay_factory: Factory, alipay_side_sdk: AliPay) -> None:
    # Odd but legal JSON (escaped slash, spacing, non-ASCII): re-serialising would break it.
    node_text = (
        '{ "code":"10000", "msg":"Success","out_trade_no":"OTN0001", "trade_no":"T\\/1",'
        '"trade_status":"TRADE_SUCCESS","total_amount":"88.88","buyer_logon_id":"张**"}'
    )
    gateway, _ = alipay_factory(answering(alipay_side_sdk, node_text))
    result = gateway.query("OTN0001")
    assert result.outcome == TradeOutcome.PAID
    assert result.gateway_trade_no == "T/1"
    assert result.paid_at is None


def test_query_paid_at_is_china_time(alipay_factory: Factory, alipay_side_sdk: AliPay) -> None:
    gateway, _ = alipay_factory(answering(alipay_side_sdk, PAID_NODE))
    assert gateway.query("OTN0001").paid_at == dt.datetime(2024, 5, 1, 4, 0, 1, tzinfo=dt.UTC)


def test_query_about_another_trade_is_unknown(
    alipay_factory: Factory, alipay_side_sdk: AliPay
) -> None:
    gateway, _ = alipay_factory(answering(alipay_side_sdk, {**PAID_NODE, "out_trade_no": "X"}))
    assert gateway.query("OTN0001").outcome == TradeOutcome.UNKNOWN


def test_query_not_exist(alipay_factory: Factory, alipay_side_sdk: AliPay) -> None:
    node = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST"}
    gateway, _ = alipay_factory(answering(alipay_side_sdk, node))
    assert gateway.query("OTN0001").outcome == TradeOutcome.NOT_FOUND


def test_error_response_node_is_unknown(alipay_factory: Factory, alipay_side_sdk: AliPay) -> None:
    text = '{"error_response":{"code":"20000","msg":"Service Currently Unavailable"}}'
    gateway, _ = alipay_factory(lambda r: make_response(200, text))
    result = gateway.query("OTN0001")
    assert result.outcome == TradeOutcome.UNKNOWN


@pytest.mark.parametrize(
    ("node", "outcome"),
    [
        ({"code": "10000", "msg": "Success", "out_trade_no": "OTN0001"}, CloseOutcome.CLOSED),
        ({"code": "40004", "sub_code": "ACQ.TRADE_NOT_EXIST"}, CloseOutcome.CLOSED),
        ({"code": "40004", "sub_code": "ACQ.TRADE_HAS_SUCCESS"}, CloseOutcome.PAID),
        ({"code": "40004", "sub_code": "ACQ.SYSTEM_ERROR"}, CloseOutcome.UNKNOWN),
    ],
)
def test_close(
    alipay_factory: Factory, alipay_side_sdk: AliPay, node: dict[str, Any], outcome: CloseOutcome
) -> None:
    gateway, _ = alipay_factory(answering(alipay_side_sdk, node))
    assert gateway.close("OTN0001").outcome == outcome


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("TRADE_SUCCESS", CloseOutcome.PAID),
        ("TRADE_CLOSED", CloseOutcome.CLOSED),
        ("WAIT_BUYER_PAY", CloseOutcome.UNKNOWN),
    ],
)
def test_close_status_error_asks_which(
    alipay_factory: Factory, alipay_side_sdk: AliPay, status: str, outcome: CloseOutcome
) -> None:
    def handler(request: requests.PreparedRequest) -> requests.Response:
        method = form_of(request)["method"]
        if method == "alipay.trade.close":
            node = {"code": "40004", "sub_code": "ACQ.TRADE_STATUS_ERROR"}
        else:
            node = {**PAID_NODE, "trade_status": status}
        return make_response(200, alipay_response(alipay_side_sdk, method, node))

    gateway, _ = alipay_factory(handler)
    assert gateway.close("OTN0001").outcome == outcome


# --- refunds ----------------------------------------------------------------------------------


def refund_request(**overrides: Any) -> RefundRequest:
    fields: dict[str, Any] = {
        "out_trade_no": "OTN0001",
        "out_refund_no": "RF0001",
        "amount": 1000,
        "total_amount": 8888,
        "currency": "CNY",
        "reason": "退货",
        "notify_url": "https://shop.test/callbacks/alipay",
    }
    fields.update(overrides)
    return RefundRequest(**fields)


@pytest.mark.parametrize("fund_change", ["Y", "N"])
def test_refund_succeeds_with_or_without_fund_change(
    alipay_factory: Factory, alipay_side_sdk: AliPay, fund_change: str
) -> None:
    node = {
        "code": "10000",
        "msg": "Success",
        "trade_no": "2024050122001",
        "out_trade_no": "OTN0001",
        "fund_change": fund_change,
        "refund_fee": "20.00",  # cumulative: not this refund's amount
    }
    gateway, transport = alipay_factory(answering(alipay_side_sdk, node))
    result = gateway.refund(refund_request())
    assert result.outcome == RefundOutcome.SUCCEEDED
    assert result.amount == 1000
    assert result.out_refund_no == "RF0001"
    biz = json.loads(form_of(transport.sent[0])["biz_content"])
    assert biz == {
        "out_trade_no": "OTN0001",
        "refund_amount": "10.00",
        "out_request_no": "RF0001",
        "refund_reason": "退货",
    }


@pytest.mark.parametrize(
    ("sub_code", "outcome"),
    [
        ("ACQ.REASON_TRADE_REFUND_FEE_ERR", RefundOutcome.FAILED),
        ("ACQ.TRADE_NOT_EXIST", RefundOutcome.FAILED),
        ("ACQ.SYSTEM_ERROR", RefundOutcome.UNKNOWN),
    ],
)
def test_refund_business_failures(
    alipay_factory: Factory, alipay_side_sdk: AliPay, sub_code: str, outcome: RefundOutcome
) -> None:
    node = {"code": "40004", "msg": "Business Failed", "sub_code": sub_code}
    gateway, _ = alipay_factory(answering(alipay_side_sdk, node))
    assert gateway.refund(refund_request()).outcome == outcome


def test_refund_query(alipay_factory: Factory, alipay_side_sdk: AliPay) -> None:
    node = {
        "code": "10000",
        "msg": "Success",
        "out_trade_no": "OTN0001",
        "out_request_no": "RF0001",
        "refund_status": "REFUND_SUCCESS",
        "refund_amount": "10.00",
        "total_amount": "88.88",
    }
    gateway, transport = alipay_factory(answering(alipay_side_sdk, node))
    result = gateway.refund_query(out_trade_no="OTN0001", out_refund_no="RF0001")
    assert result.outcome == RefundOutcome.SUCCEEDED
    assert result.amount == 1000
    params = form_of(transport.sent[0])
    assert params["method"] == "alipay.trade.fastpay.refund.query"
    assert json.loads(params["biz_content"]) == {
        "out_trade_no": "OTN0001",
        "out_request_no": "RF0001",
    }


def test_refund_query_empty_is_not_found(alipay_factory: Factory, alipay_side_sdk: AliPay) -> None:
    node = {
        "code": "10000",
        "msg": "Success",
        "out_trade_no": "OTN0001",
        "out_request_no": "RF0001",
    }
    gateway, _ = alipay_factory(answering(alipay_side_sdk, node))
    result = gateway.refund_query(out_trade_no="OTN0001", out_refund_no="RF0001")
    assert result.outcome == RefundOutcome.NOT_FOUND


# --- notifications ----------------------------------------------------------------------------

FUND_BILL_LIST = '[{"amount":"88.88","fundChannel":"ALIPAYACCOUNT"}]'


def notify_params(creds: dict[str, Any], **overrides: str) -> dict[str, str]:
    params = {
        "notify_time": "2024-05-01 12:00:02",
        "notify_type": "trade_status_sync",
        "notify_id": "2024050100222120002abcdef",
        "charset": "utf-8",
        "version": "1.0",
        "app_id": creds["alipay"]["app_id"],
        "auth_app_id": creds["alipay"]["app_id"],
        "seller_id": creds["alipay"]["seller_id"],
        "trade_no": "2024050122001",
        "out_trade_no": "OTN0001",
        "buyer_id": "2088102177846880",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "88.88",
        "receipt_amount": "88.88",
        "subject": "两件 T 恤",
        "gmt_create": "2024-05-01 11:59:00",
        "gmt_payment": "2024-05-01 12:00:01",
        "fund_bill_list": FUND_BILL_LIST,
    }
    params.update(overrides)
    return params


def sdk_signed_body(sdk: AliPay, params: dict[str, str]) -> bytes:
    """What Alipay POSTs: the SDK's signed, URL-encoded string plus ``sign_type`` (unsigned)."""
    return (sdk.sign_data(dict(params)) + "&sign_type=RSA2").encode()


def test_notify_signed_by_the_sdk_is_accepted(
    alipay_factory: Factory, alipay_side_sdk: AliPay, creds: dict[str, Any]
) -> None:
    gateway, transport = alipay_factory()
    body = sdk_signed_body(alipay_side_sdk, notify_params(creds))
    note = gateway.parse_notification(headers={}, body=body, content_type=FORM)
    assert note.kind == "payment"
    assert note.event_id == "2024050100222120002abcdef"
    assert note.trade is not None
    assert note.trade.outcome == TradeOutcome.PAID
    assert note.trade.amount == 8888
    assert note.trade.out_trade_no == "OTN0001"
    assert note.trade.gateway_trade_no == "2024050122001"
    assert note.trade.merchant_id == creds["alipay"]["app_id"]
    assert note.trade.paid_at == dt.datetime(2024, 5, 1, 4, 0, 1, tzinfo=dt.UTC)
    assert note.raw == body.decode()
    assert transport.sent == []


def test_refund_notify(
    alipay_factory: Factory, alipay_side_sdk: AliPay, creds: dict[str, Any]
) -> None:
    gateway, _ = alipay_factory()
    params = notify_params(
        creds,
        trade_status="TRADE_CLOSED",
        out_biz_no="RF0001",
        refund_fee="88.88",
        gmt_refund="2024-05-02 09:00:00.123",
    )
    note = gateway.parse_notification(
        headers={}, body=sdk_signed_body(alipay_side_sdk, params), content_type=FORM
    )
    assert note.kind == "refund"
    assert note.refund is not None
    assert note.refund.outcome == RefundOutcome.SUCCEEDED
    assert note.refund.out_refund_no == "RF0001"
    assert note.refund.out_trade_no == "OTN0001"
    # A fully refunded trade is TRADE_CLOSED, but it *was* paid.
    assert note.trade is not None and note.trade.outcome == TradeOutcome.PAID


def _reject(gateway: AlipayGateway, body: bytes, content_type: str = FORM) -> str:
    with pytest.raises(NotificationRejected) as info:
        gateway.parse_notification(headers={}, body=body, content_type=content_type)
    return info.value.code


def test_notify_forgeries_are_rejected(
    alipay_factory: Factory,
    alipay_side_sdk: AliPay,
    merchant_side_sdk: AliPay,
    creds: dict[str, Any],
) -> None:
    gateway, _ = alipay_factory()
    good = sdk_signed_body(alipay_side_sdk, notify_params(creds))
    # Sanity: the SDK itself accepts what it signed (as the merchant would verify it).
    sdk_params = dict(parse_qsl(good.decode()))
    sdk_verifier = AliPay(
        appid=creds["alipay"]["app_id"],
        app_private_key_string=creds["alipay"]["app_private_key_pem"],
        alipay_public_key_string=creds["alipay"]["alipay_public_key_pem"],
    )
    sdk_signature = sdk_params.pop("sign")
    assert sdk_verifier.verify(dict(sdk_params), sdk_signature)

    # Signed by someone else's key.
    assert _reject(gateway, sdk_signed_body(merchant_side_sdk, notify_params(creds))) == (
        "bad_signature"
    )
    # Unsigned.
    unsigned = "&".join(
        f"{k}={v}" for k, v in parse_qsl(good.decode()) if k not in ("sign",)
    ).encode()
    assert _reject(gateway, unsigned) == "bad_signature"
    # Amount changed after signing.
    changed = good.replace(b"total_amount=88.88", b"total_amount=0.01")
    assert changed != good
    assert _reject(gateway, changed) == "bad_signature"
    # fund_bill_list re-encoded (same JSON, different text) and re-ordered.
    params = dict(parse_qsl(good.decode()))
    for variant in (
        '[{"amount": "88.88", "fundChannel": "ALIPAYACCOUNT"}]',
        '[{"fundChannel":"ALIPAYACCOUNT","amount":"88.88"}]',
    ):
        tampered = {**params, "fund_bill_list": variant}
        assert _reject(gateway, urlencode(tampered).encode()) == "bad_signature"
    # A sign_type we do not use.
    assert _reject(gateway, good.replace(b"sign_type=RSA2", b"sign_type=RSA")) == "bad_signature"


@pytest.mark.parametrize(
    ("field", "value"), [("app_id", "2021000000000001"), ("seller_id", "2088000000000001")]
)
def test_notify_for_another_merchant(
    alipay_factory: Factory, alipay_side_sdk: AliPay, creds: dict[str, Any], field: str, value: str
) -> None:
    gateway, _ = alipay_factory()
    body = sdk_signed_body(alipay_side_sdk, notify_params(creds, **{field: value}))
    assert _reject(gateway, body) == "wrong_merchant"


def test_malformed_notifies(
    alipay_factory: Factory, alipay_side_sdk: AliPay, creds: dict[str, Any]
) -> None:
    gateway, _ = alipay_factory()
    good = sdk_signed_body(alipay_side_sdk, notify_params(creds))
    assert _reject(gateway, good, "application/json") == "malformed"
    assert _reject(gateway, good + b"&pad=" + b"x" * 65536) == "malformed"
    assert _reject(gateway, b"subject=%FF%FE&sign=abc") == "malformed"
    assert _reject(gateway, b"\xff\xfe") == "malformed"
    assert _reject(gateway, good + b"&total_amount=1.00") == "malformed"  # duplicated parameter
    params = notify_params(creds)
    del params["notify_id"]
    assert _reject(gateway, sdk_signed_body(alipay_side_sdk, params)) == "malformed"
    bad_amount = sdk_signed_body(alipay_side_sdk, notify_params(creds, total_amount="88.888"))
    assert _reject(gateway, bad_amount) == "malformed"


def test_acknowledgement(alipay_factory: Factory) -> None:
    gateway, _ = alipay_factory()
    ok = gateway.acknowledgement(ok=True)
    assert (ok.status, ok.body, ok.content_type) == (200, b"success", "text/plain")
    assert gateway.acknowledgement(ok=False, message="x").body == b"fail"


def test_verify_return(
    alipay_factory: Factory, alipay_side_sdk: AliPay, creds: dict[str, Any]
) -> None:
    gateway, _ = alipay_factory()
    params = {
        "charset": "utf-8",
        "out_trade_no": "OTN0001",
        "method": "alipay.trade.wap.pay.return",
        "total_amount": "88.88",
        "trade_no": "2024050122001",
        "auth_app_id": creds["alipay"]["app_id"],
        "version": "1.0",
        "app_id": creds["alipay"]["app_id"],
        "seller_id": creds["alipay"]["seller_id"],
        "timestamp": "2024-05-01 12:00:03",
    }
    signed = dict(parse_qsl(alipay_side_sdk.sign_data(dict(params))))
    signed["sign_type"] = "RSA2"
    info = gateway.verify_return(signed)
    assert info.verified and info.out_trade_no == "OTN0001"
    assert not gateway.verify_return({**signed, "total_amount": "0.01"}).verified
    assert not gateway.verify_return({k: v for k, v in signed.items() if k != "sign"}).verified
    other_seller = dict(
        parse_qsl(alipay_side_sdk.sign_data({**params, "seller_id": "2088000000000001"}))
    )
    assert not gateway.verify_return(other_seller).verified


# --- bills ------------------------------------------------------------------------------------

BILL_CSV = "\r\n".join(
    [
        "#支付宝业务明细查询",
        "#账号：[20880000000000000156]",
        "#起始日期：[2024年05月01日 00:00:00]   终止日期：[2024年05月02日 00:00:00]",
        "#-----------------------------------------业务明细列表----------------------------------------",
        "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,"
        "对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,"
        "商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
        "退款批次号/请求号,服务费（元）,分润（元）,备注",
        "2024050122001\t,OTN0001\t,交易,两件 T 恤,2024-05-01 11:59:00,2024-05-01 12:00:01,,,,,"
        "buy***@example.com,88.88,88.88,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.53,0.00,",
        "2024050122001\t,OTN0001\t,退款,两件 T 恤,2024-05-01 11:59:00,2024-05-01 18:00:00,,,,,"
        "buy***@example.com,-10.00,-10.00,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,RF0001\t,0.06,0.00,",
        "#-----------------------------------------业务明细列表结束------------------------------------",
        "#交易合计：1笔，商家实收：88.88元，",
        "#导出时间：[2024年05月02日 09:10:11]",
    ]
)


class GbkZipInfo(zipfile.ZipInfo):
    """Writes its name as raw GBK bytes without the UTF-8 flag, as Alipay's bill zips do."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.filename.encode("gbk"), self.flag_bits


def bill_zip(csv_text: str = BILL_CSV) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # Alipay writes GBK names without the UTF-8 flag; the summary comes first here.
        for name, text in (
            ("20880000000000000156_20240501_业务明细(汇总).csv", "#汇总\r\n门店编号,门店名称\r\n"),
            ("20880000000000000156_20240501_业务明细.csv", csv_text),
        ):
            info = GbkZipInfo(name)
            archive.writestr(info, text.encode("gbk"))
    return buffer.getvalue()


@pytest.mark.parametrize("refund_order_amount", ["-10.00", "88.88"])
def test_parse_bill_zip(refund_order_amount: str) -> None:
    # Refund rows carry either the negative refund or the original order amount in 订单金额;
    # 商家实收 is the negative refund either way.
    csv_text = BILL_CSV.replace(
        "buy***@example.com,-10.00,", f"buy***@example.com,{refund_order_amount},"
    )
    lines = parse_bill_zip(bill_zip(csv_text))
    assert [(x.kind, x.out_trade_no, x.amount, x.out_refund_no) for x in lines] == [
        ("payment", "OTN0001", 8888, ""),
        ("refund", "OTN0001", 1000, "RF0001"),
    ]
    assert lines[0].gateway_trade_no == "2024050122001"
    assert lines[0].occurred_at == dt.datetime(2024, 5, 1, 4, 0, 1, tzinfo=dt.UTC)
    assert lines[0].currency == "CNY"


def test_fetch_statement(alipay_factory: Factory, alipay_side_sdk: AliPay) -> None:
    method = "alipay.data.dataservice.bill.downloadurl.query"

    def handler(request: requests.PreparedRequest) -> requests.Response:
        if request.method == "GET":
            assert request.url == "https://bills.test/download?id=1"
            return make_response(200, bill_zip())
        assert json.loads(form_of(request)["biz_content"]) == {
            "bill_type": "trade",
            "bill_date": "2024-05-01",
        }
        node = {
            "code": "10000",
            "msg": "Success",
            "bill_download_url": "https://bills.test/download?id=1",
        }
        return make_response(200, alipay_response(alipay_side_sdk, method, node))

    gateway, _ = alipay_factory(handler)
    lines = gateway.fetch_statement(dt.date(2024, 5, 1))
    assert len(lines) == 2


def test_fetch_statement_not_ready(alipay_factory: Factory, alipay_side_sdk: AliPay) -> None:
    node = {"code": "40004", "msg": "Business Failed", "sub_code": "isp.bill_not_exist"}
    gateway, _ = alipay_factory(answering(alipay_side_sdk, node))
    with pytest.raises(GatewayUnavailable):
        gateway.fetch_statement(dt.date(2024, 5, 1))
