"""The sandbox speaks WeChat Pay API v3: ``wechatpayv3`` in public-key mode is the client.

Every 2xx answer the SDK receives is verified by the SDK itself (it raises on a bad signature,
a missing ``Wechatpay-Signature-Type`` or an unknown ``Wechatpay-Serial``), so each successful
call below is also a check of our response signing, including the 204 of close.

What the SDK cannot do, and how these tests get around it:

- No base-URL option: we set the private ``_core._gate_way``.
- ``download_bill`` skips verification (the real download is unsigned) and returns bytes; we
  check the SHA1 and parse the backtick CSV ourselves.
- ``callback`` verifies and decrypts but never checks the timestamp window, so freshness of
  re-sent notifications is checked here by reading the headers.
- It cannot produce a wrong signature on purpose: a client built with another private key can.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import secrets
import time
from typing import Any

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from wechatpayv3 import WeChatPay, WeChatPayType

from tests.sandbox.conftest import Receiver, make_wechat
from tests.support.sandbox import SandboxControl, SandboxProcess

CHINA = dt.timezone(dt.timedelta(hours=8))
NOTIFY = "/notify/wechat"


def otn(prefix: str = "W") -> str:
    return prefix + secrets.token_hex(8)


def create(client: WeChatPay, trade: str, total: int = 1999, **kwargs: Any) -> tuple[int, Any]:
    code, text = client.pay(
        description="Jasmine tea",
        out_trade_no=trade,
        amount={"total": total, "currency": "CNY"},
        **kwargs,
    )
    return code, json.loads(text) if text else None


def callback(client: WeChatPay, captured: Any) -> dict[str, Any]:
    result = client.callback(captured.headers, captured.body)
    assert result is not None, "notification failed verification/decryption"
    return dict(result)


def test_native_prepay_query_pay_notify_refund(
    wechat_client: WeChatPay,
    control: SandboxControl,
    receiver: Receiver,
    sandbox_gateway: SandboxProcess,
) -> None:
    trade = otn()
    code, answer = create(wechat_client, trade)
    assert code == 200
    assert answer == {"code_url": f"{sandbox_gateway.base_url}/cashier/wechat/{trade}"}

    code, text = wechat_client.query(out_trade_no=trade)
    assert code == 200
    queried = json.loads(text)
    assert queried["trade_state"] == "NOTPAY" and queried["amount"]["total"] == 1999
    assert "transaction_id" not in queried

    assert control.pay("wechat", trade).status_code == 200
    (notify,) = receiver.wait_for(1, NOTIFY)
    event = callback(wechat_client, notify)
    assert event["event_type"] == "TRANSACTION.SUCCESS"
    assert event["resource_type"] == "encrypt-resource"
    paid = event["resource"]
    assert paid["trade_state"] == "SUCCESS" and paid["out_trade_no"] == trade
    assert paid["amount"]["total"] == 1999 and paid["mchid"] == wechat_client._mchid
    assert paid["trade_type"] == "NATIVE"

    code, text = wechat_client.query(out_trade_no=trade)
    assert json.loads(text)["trade_state"] == "SUCCESS"
    code, text = wechat_client.query(transaction_id=paid["transaction_id"])
    assert code == 200 and json.loads(text)["out_trade_no"] == trade

    refund_notify = receiver.url("/notify/refund")
    amount = {"refund": 500, "total": 1999, "currency": "CNY"}
    code, text = wechat_client.refund(
        "RF" + trade, amount, out_trade_no=trade, notify_url=refund_notify
    )
    assert code == 200
    refund = json.loads(text)
    assert refund["status"] == "PROCESSING" and refund["amount"]["refund"] == 500
    # Same out_refund_no again: the same refund, not a second one.
    code, text = wechat_client.refund(
        "RF" + trade, amount, out_trade_no=trade, notify_url=refund_notify
    )
    assert code == 200 and json.loads(text)["refund_id"] == refund["refund_id"]
    code, text = wechat_client.refund(
        "RX" + trade, {"refund": 1500, "total": 1999, "currency": "CNY"}, out_trade_no=trade
    )
    assert code == 400 and json.loads(text)["code"] == "INVALID_REQUEST"  # over-refund

    (refund_event,) = receiver.wait_for(1, "/notify/refund", timeout=5)
    event = callback(wechat_client, refund_event)
    assert event["event_type"] == "REFUND.SUCCESS"
    assert event["resource"]["out_refund_no"] == "RF" + trade
    assert event["resource"]["refund_status"] == "SUCCESS"
    code, text = wechat_client.query_refund("RF" + trade)
    assert code == 200
    done = json.loads(text)
    assert done["status"] == "SUCCESS" and "success_time" in done

    code, text = wechat_client.query(out_trade_no=trade)
    assert json.loads(text)["trade_state"] == "REFUND"
    entry = control.trade(trade)
    assert entry is not None and entry["refunded"] == 500
    assert entry["refunds"] == [
        {**entry["refunds"][0], "out_refund_no": "RF" + trade, "amount": 500, "status": "SUCCESS"}
    ]


def test_unknown_trade_and_refund(wechat_client: WeChatPay) -> None:
    code, text = wechat_client.query(out_trade_no=otn())
    assert code == 404 and json.loads(text)["code"] == "ORDER_NOT_EXIST"
    code, text = wechat_client.query_refund("nope123")
    assert code == 404 and json.loads(text)["code"] == "RESOURCE_NOT_EXISTS"
    code, text = wechat_client.refund(
        "R" + otn(), {"refund": 1, "total": 1, "currency": "CNY"}, out_trade_no=otn()
    )
    assert code == 404


def test_close_is_204_and_blocks_payment(wechat_client: WeChatPay, control: SandboxControl) -> None:
    trade = otn()
    create(wechat_client, trade)
    code, body = wechat_client.close(trade)
    assert code == 204 and body == b""  # the SDK verified the signature over the empty body
    code, text = wechat_client.query(out_trade_no=trade)
    assert json.loads(text)["trade_state"] == "CLOSED"
    refused = control.pay("wechat", trade)
    assert refused.status_code == 409 and refused.json()["code"] == "trade_closed"
    code, text = create(wechat_client, trade)
    assert code == 400 and text["code"] == "ORDER_CLOSED"


def test_paid_trade_cannot_be_closed_or_recreated(
    wechat_client: WeChatPay, control: SandboxControl
) -> None:
    trade = otn()
    assert create(wechat_client, trade)[0] == 200
    assert create(wechat_client, trade)[0] == 200  # same request again: same trade
    code, text = create(wechat_client, trade, total=2000)
    assert code == 403 and text["code"] == "OUT_TRADE_NO_USED"
    control.pay("wechat", trade)
    code, text = wechat_client.close(trade)
    assert code == 400 and json.loads(text)["code"] == "ORDERPAID"
    code, text = create(wechat_client, trade)
    assert code == 400 and text["code"] == "ORDERPAID"


def test_h5_app_jsapi_prepay(
    sandbox_gateway: SandboxProcess,
    creds: dict[str, Any],
    receiver: Receiver,
    control: SandboxControl,
) -> None:
    notify_url = receiver.url(NOTIFY)
    h5 = make_wechat(sandbox_gateway.base_url, creds, notify_url, wechatpay_type=WeChatPayType.H5)
    trade = otn()
    # The SDK insists on scene_info being present; the gateway also wants h5_info.type in it.
    code, text = create(h5, trade, scene_info={"payer_client_ip": "127.0.0.1"})
    assert code == 400 and text["code"] == "PARAM_ERROR"
    code, text = create(
        h5, trade, scene_info={"payer_client_ip": "127.0.0.1", "h5_info": {"type": "Wap"}}
    )
    assert code == 200 and text["h5_url"] == f"{sandbox_gateway.base_url}/cashier/wechat/{trade}"

    app = make_wechat(sandbox_gateway.base_url, creds, notify_url, wechatpay_type=WeChatPayType.APP)
    code, text = create(app, otn())
    assert code == 200 and text["prepay_id"].startswith("wx")

    jsapi = make_wechat(
        sandbox_gateway.base_url, creds, notify_url, wechatpay_type=WeChatPayType.JSAPI
    )
    code, text = create(jsapi, otn(), payer={"openid": ""})
    assert code == 400 and text["code"] == "PARAM_ERROR"  # payer.openid is required for JSAPI
    trade = otn()
    code, text = create(jsapi, trade, payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"})
    assert code == 200 and text["prepay_id"].startswith("wx")
    control.pay("wechat", trade)
    (notify,) = receiver.wait_for(1, NOTIFY)
    resource = callback(jsapi, notify)["resource"]
    assert resource["trade_type"] == "JSAPI"
    assert resource["payer"]["openid"] == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def test_h5_cashier_redirect_url(
    sandbox_gateway: SandboxProcess, creds: dict[str, Any], receiver: Receiver
) -> None:
    h5 = make_wechat(
        sandbox_gateway.base_url, creds, receiver.url(NOTIFY), wechatpay_type=WeChatPayType.H5
    )
    trade = otn()
    _, text = create(
        h5, trade, scene_info={"payer_client_ip": "127.0.0.1", "h5_info": {"type": "Wap"}}
    )
    session = requests.Session()
    session.trust_env = False
    # Merchants append "&redirect_url=…" to h5_url.
    page = session.get(text["h5_url"] + "&redirect_url=http%3A%2F%2Fshop.example%2Fback", timeout=5)
    assert page.status_code == 200 and "¥19.99" in page.text
    paid = session.post(
        f"{sandbox_gateway.base_url}/cashier/wechat/{trade}/pay",
        data={"redirect_url": "http://shop.example/back"},
        timeout=5,
    )
    assert paid.status_code == 200 and "Paid" in paid.text
    assert 'href="http://shop.example/back"' in paid.text


def _impostor_key() -> str:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


def test_bad_merchant_signature_is_401(
    sandbox_gateway: SandboxProcess, creds: dict[str, Any], receiver: Receiver
) -> None:
    impostor = make_wechat(
        sandbox_gateway.base_url, creds, receiver.url(NOTIFY), private_key=_impostor_key()
    )
    code, text = create(impostor, otn())
    assert code == 401 and text["code"] == "SIGN_ERROR"
    code, text = impostor.query(out_trade_no=otn())
    assert code == 401
    session = requests.Session()
    session.trust_env = False
    anonymous = session.get(
        f"{sandbox_gateway.base_url}/v3/pay/transactions/out-trade-no/X123456?mchid=1", timeout=5
    )
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "SIGN_ERROR"


def test_tampered_body_is_401(wechat_client: WeChatPay, sandbox_gateway: SandboxProcess) -> None:
    from wechatpayv3.utils import build_authorization

    core = wechat_client._core
    signed_body = {"mchid": core._mchid}
    authorization = build_authorization(
        "/v3/pay/transactions/out-trade-no/W12345678/close",
        "POST",
        core._mchid,
        core._cert_serial_no,
        core._private_key,
        data=signed_body,
    )
    session = requests.Session()
    session.trust_env = False
    response = session.post(
        f"{sandbox_gateway.base_url}/v3/pay/transactions/out-trade-no/W12345678/close",
        data=json.dumps({"mchid": core._mchid, "x": 1}),
        headers={"Authorization": authorization, "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 401


def test_time_expire_is_enforced(wechat_client: WeChatPay, control: SandboxControl) -> None:
    expired, lenient = otn(), otn()
    past = (dt.datetime.now(CHINA) - dt.timedelta(seconds=1)).isoformat(timespec="seconds")
    for trade in (expired, lenient):
        assert create(wechat_client, trade, time_expire=past)[0] == 200
    code, text = create(wechat_client, otn(), time_expire="2030-01-01 10:00:00")
    assert code == 400 and text["code"] == "PARAM_ERROR"  # not RFC 3339
    # time_expire is the last moment to pay, not a close: the query still says NOTPAY.
    assert json.loads(wechat_client.query(out_trade_no=expired)[1])["trade_state"] == "NOTPAY"
    refused = control.pay("wechat", expired)
    assert refused.status_code == 409 and refused.json()["code"] == "trade_expired"
    control.set_faults(ignore_time_expire=1)
    assert control.pay("wechat", lenient).status_code == 200


def test_notify_resent_until_acknowledged(
    wechat_client: WeChatPay, control: SandboxControl, receiver: Receiver
) -> None:
    trade = otn()
    create(wechat_client, trade)
    receiver.plan = [(500, b'{"code":"FAIL","message":"busy"}'), (302, b"")]
    receiver.default = (204, b"")
    control.pay("wechat", trade)
    attempts = receiver.wait_for(3, NOTIFY, timeout=8)
    events = [callback(wechat_client, a) for a in attempts]
    assert len({e["id"] for e in events}) == 1  # same event id on every re-send
    nonces = {a.headers["Wechatpay-Nonce"] for a in attempts}
    signatures = {a.headers["Wechatpay-Signature"] for a in attempts}
    assert len(nonces) == 3 and len(signatures) == 3  # freshly signed each time
    for attempt in attempts:
        assert abs(time.time() - int(attempt.headers["Wechatpay-Timestamp"])) < 60
        assert attempt.headers["Wechatpay-Serial"] == wechat_client._core._public_key_id
    time.sleep(1.5)
    assert len(receiver.captured(NOTIFY)) == 3


def test_trade_bill(wechat_client: WeChatPay, control: SandboxControl) -> None:
    paid, refunded = otn(), otn()
    create(wechat_client, paid, total=1999)
    create(wechat_client, refunded, total=3000)
    control.pay("wechat", paid)
    control.pay("wechat", refunded)
    wechat_client.refund(
        "RB" + refunded, {"refund": 1000, "total": 3000, "currency": "CNY"}, out_trade_no=refunded
    )

    today = dt.datetime.now(CHINA).strftime("%Y-%m-%d")
    for tar_type in ("GZIP", None):
        if tar_type:
            code, text = wechat_client.trade_bill(today, bill_type="ALL", tar_type=tar_type)
        else:
            code, text = wechat_client._core.request(
                f"/v3/bill/tradebill?bill_date={today}&bill_type=ALL"
            )
        assert code == 200
        bill = json.loads(text)
        assert bill["hash_type"] == "SHA1"
        code, content = wechat_client.download_bill(bill["download_url"])
        assert code == 200
        raw = gzip.decompress(content) if tar_type else content
        assert hashlib.sha1(raw).hexdigest() == bill["hash_value"]

    lines = raw.decode("utf-8").splitlines()
    header = lines[0].split(",")
    assert header[0] == "交易时间" and len(header) == 27
    summary_at = next(i for i, line in enumerate(lines) if line.startswith("总交易单数"))
    rows = [
        dict(zip(header, (f.lstrip("`") for f in line.split(",")), strict=True))
        for line in lines[1:summary_at]
    ]
    assert all(line.startswith("`") for line in lines[1:summary_at])
    by_key = {(r["商户订单号"], r["交易状态"]): r for r in rows}
    assert by_key[(paid, "SUCCESS")]["订单金额"] == "19.99"
    assert by_key[(refunded, "SUCCESS")]["应结订单金额"] == "30.00"
    assert by_key[(refunded, "REFUND")]["退款金额"] == "10.00"
    assert by_key[(refunded, "REFUND")]["商户退款单号"] == "RB" + refunded
    summary = dict(
        zip(
            lines[summary_at].split(","),
            (f.lstrip("`") for f in lines[summary_at + 1].split(",")),
            strict=True,
        )
    )
    assert summary["总交易单数"] == "3" and summary["应结订单总金额"] == "49.99"
    assert summary["退款总金额"] == "10.00"

    future = (dt.datetime.now(CHINA) + dt.timedelta(days=2)).strftime("%Y-%m-%d")
    code, text = wechat_client.trade_bill(future)
    assert code == 400 and json.loads(text)["code"] == "NO_STATEMENT_EXIST"
