"""The sandbox speaks Alipay: python-alipay-sdk, pointed at it, is the independent client.

What the SDK cannot do, and how these tests get around it:

- It has no base-URL option: we set the private ``_gateway`` attribute.
- It always calls the gateway with GET; the POST-form transport real Alipay also accepts is
  exercised by posting the SDK's own signed string (``sign_data``) with ``requests``.
- It has no call for ``alipay.data.dataservice.bill.downloadurl.query``: we use its generic
  ``server_api``; it never downloads or parses the bill, which we do with ``zipfile``/``csv``.
- ``page.pay``/``wap.pay``/``app.pay`` only build signed query strings; a browser (``requests``
  here) carries them to the gateway, as the shopper's browser or the Alipay app would.
- It cannot see HTTP statuses of failed calls: a 5xx surfaces as ``urllib.error.HTTPError``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
import secrets
import time
import zipfile
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from alipay import AliPay
from alipay.exceptions import AliPayException
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.sandbox.conftest import Receiver, make_alipay
from tests.support.sandbox import SandboxControl, SandboxProcess

CHINA = dt.timezone(dt.timedelta(hours=8))


def otn(prefix: str = "A") -> str:
    return prefix + secrets.token_hex(8)


def browser() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def verify_notify(client: AliPay, body: bytes) -> dict[str, str]:
    fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
    data = dict(fields)
    signature = data.pop("sign")
    assert client.verify(data, signature), fields
    return fields


def test_precreate_query_pay_notify_refund(
    alipay_client: AliPay,
    control: SandboxControl,
    receiver: Receiver,
    sandbox_gateway: SandboxProcess,
) -> None:
    trade = otn()
    answer = alipay_client.api_alipay_trade_precreate(
        subject="Green tea",
        out_trade_no=trade,
        total_amount="19.99",
        notify_url=receiver.url("/ali"),
    )
    assert answer["code"] == "10000"
    assert answer["qr_code"] == f"{sandbox_gateway.base_url}/cashier/alipay/{trade}"

    query = alipay_client.api_alipay_trade_query(out_trade_no=trade)
    assert query["trade_status"] == "WAIT_BUYER_PAY"
    assert query["total_amount"] == "19.99"

    paid = control.pay("alipay", trade)
    assert paid.status_code == 200
    assert paid.json()["status"] == "PAID" and paid.json()["amount"] == 1999

    (notify,) = receiver.wait_for(1, "/ali")
    fields = verify_notify(alipay_client, notify.body)
    assert fields["trade_status"] == "TRADE_SUCCESS"
    assert fields["out_trade_no"] == trade
    assert fields["total_amount"] == "19.99"
    assert fields["app_id"] == alipay_client.appid
    assert fields["notify_type"] == "trade_status_sync"
    assert "" not in fields.values()  # python-alipay-sdk signs empty values too: never send them
    assert notify.headers["Content-Type"].startswith("application/x-www-form-urlencoded")

    query = alipay_client.api_alipay_trade_query(out_trade_no=trade)
    assert query["trade_status"] == "TRADE_SUCCESS"
    assert query["trade_no"] == fields["trade_no"]
    # trade_no wins over out_trade_no (§1.6): a wrong out_trade_no is ignored
    by_no = alipay_client.api_alipay_trade_query(out_trade_no="nope", trade_no=fields["trade_no"])
    assert by_no["out_trade_no"] == trade

    first = alipay_client.api_alipay_trade_refund("5.00", out_trade_no=trade, out_request_no="R1")
    assert (first["code"], first["fund_change"], first["refund_fee"]) == ("10000", "Y", "5.00")
    again = alipay_client.api_alipay_trade_refund("5.00", out_trade_no=trade, out_request_no="R1")
    assert (again["code"], again["fund_change"], again["refund_fee"]) == ("10000", "N", "5.00")
    second = alipay_client.api_alipay_trade_refund("4.99", out_trade_no=trade, out_request_no="R2")
    assert (second["fund_change"], second["refund_fee"]) == ("Y", "9.99")  # cumulative
    over = alipay_client.api_alipay_trade_refund("10.01", out_trade_no=trade, out_request_no="R3")
    assert (over["code"], over["sub_code"]) == ("40004", "ACQ.REASON_TRADE_REFUND_FEE_ERR")

    refund_query = alipay_client.api_alipay_trade_fastpay_refund_query("R2", out_trade_no=trade)
    assert refund_query["refund_status"] == "REFUND_SUCCESS"
    assert refund_query["refund_amount"] == "4.99"
    unknown = alipay_client.api_alipay_trade_fastpay_refund_query("R9", out_trade_no=trade)
    assert unknown["code"] == "10000" and "refund_status" not in unknown

    rest = alipay_client.api_alipay_trade_refund("10.00", out_trade_no=trade, out_request_no="R4")
    assert rest["refund_fee"] == "19.99"
    assert (
        alipay_client.api_alipay_trade_query(out_trade_no=trade)["trade_status"] == "TRADE_CLOSED"
    )

    entry = control.trade(trade)
    assert entry is not None
    assert entry["status"] == "PAID" and entry["refunded"] == 1999
    assert [(r["out_refund_no"], r["amount"]) for r in entry["refunds"]] == [
        ("R1", 500),
        ("R2", 499),
        ("R4", 1000),
    ]


def test_business_failures_are_signed(alipay_client: AliPay) -> None:
    # The SDK raises on unsigned answers, so getting a node back proves the 40004 was signed.
    missing = alipay_client.api_alipay_trade_query(out_trade_no=otn())
    assert (missing["code"], missing["sub_code"]) == ("40004", "ACQ.TRADE_NOT_EXIST")
    close = alipay_client.api_alipay_trade_close(out_trade_no=otn())
    assert close["sub_code"] == "ACQ.TRADE_NOT_EXIST"


def test_refund_without_request_number_must_be_full(
    alipay_client: AliPay, control: SandboxControl
) -> None:
    trade = otn()
    alipay_client.api_alipay_trade_precreate(subject="x", out_trade_no=trade, total_amount="3.00")
    unpaid = alipay_client.api_alipay_trade_refund("3.00", out_trade_no=trade)
    assert unpaid["sub_code"] == "ACQ.TRADE_STATUS_ERROR"
    control.pay("alipay", trade)
    partial = alipay_client.api_alipay_trade_refund("1.00", out_trade_no=trade)
    assert partial["sub_code"] == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    full = alipay_client.api_alipay_trade_refund("3.00", out_trade_no=trade)
    assert full["fund_change"] == "Y"
    # The trade number stands in for the missing request number in the refund query.
    assert (
        alipay_client.api_alipay_trade_fastpay_refund_query(trade, out_trade_no=trade)[
            "refund_status"
        ]
        == "REFUND_SUCCESS"
    )


def test_close_then_pay_is_refused(alipay_client: AliPay, control: SandboxControl) -> None:
    trade = otn()
    alipay_client.api_alipay_trade_precreate(subject="x", out_trade_no=trade, total_amount="1.00")
    closed = alipay_client.api_alipay_trade_close(out_trade_no=trade)
    assert closed["code"] == "10000" and closed["out_trade_no"] == trade
    assert (
        alipay_client.api_alipay_trade_query(out_trade_no=trade)["trade_status"] == "TRADE_CLOSED"
    )
    refused = control.pay("alipay", trade)
    assert refused.status_code == 409 and refused.json()["code"] == "trade_closed"
    again = alipay_client.api_alipay_trade_precreate(
        subject="x", out_trade_no=trade, total_amount="1.00"
    )
    assert again["sub_code"] == "ACQ.TRADE_HAS_CLOSE"


def test_paid_trade_cannot_be_closed_or_recreated(
    alipay_client: AliPay, control: SandboxControl
) -> None:
    trade = otn()
    alipay_client.api_alipay_trade_precreate(subject="x", out_trade_no=trade, total_amount="1.00")
    same = alipay_client.api_alipay_trade_precreate(
        subject="x", out_trade_no=trade, total_amount="1.00"
    )
    assert same["code"] == "10000"  # the same request again is idempotent
    changed = alipay_client.api_alipay_trade_precreate(
        subject="x", out_trade_no=trade, total_amount="2.00"
    )
    assert changed["sub_code"] == "ACQ.CONTEXT_INCONSISTENT"
    assert control.pay("alipay", trade).status_code == 200
    assert control.pay("alipay", trade).status_code == 409
    assert (
        alipay_client.api_alipay_trade_close(out_trade_no=trade)["sub_code"]
        == "ACQ.TRADE_STATUS_ERROR"
    )
    recreated = alipay_client.api_alipay_trade_precreate(
        subject="x", out_trade_no=trade, total_amount="1.00"
    )
    assert recreated["sub_code"] == "ACQ.TRADE_HAS_SUCCESS"


def test_bad_merchant_signature_is_rejected(
    sandbox_gateway: SandboxProcess, creds: dict[str, Any]
) -> None:
    impostor_key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    impostor = make_alipay(sandbox_gateway.base_url, creds, app_private_key=impostor_key)
    with pytest.raises(AliPayException, match=r"isv\.invalid-signature"):
        impostor.api_alipay_trade_precreate(subject="x", out_trade_no=otn(), total_amount="1.00")
    stranger = make_alipay(sandbox_gateway.base_url, creds, appid="2021000000000000")
    with pytest.raises(AliPayException, match=r"isv\.invalid-app-id"):
        stranger.api_alipay_trade_query(out_trade_no=otn())


def test_tampered_biz_content_fails_verification(
    alipay_client: AliPay, sandbox_gateway: SandboxProcess
) -> None:
    data = alipay_client.build_body("alipay.trade.query", {"out_trade_no": "A1"})
    signed = alipay_client.sign_data(data)
    tampered = signed.replace("A1", "A2")
    answer = browser().get(f"{sandbox_gateway.base_url}/gateway.do?{tampered}", timeout=5).json()
    node = answer["alipay_trade_query_response"]
    assert node["sub_code"] == "isv.invalid-signature" and "sign" not in answer


def test_post_form_transport(alipay_client: AliPay, sandbox_gateway: SandboxProcess) -> None:
    trade = otn()
    data = alipay_client.build_body(
        "alipay.trade.precreate",
        {"out_trade_no": trade, "total_amount": "8.80", "subject": "表单 POST"},
    )
    response = browser().post(
        f"{sandbox_gateway.base_url}/gateway.do",
        data=alipay_client.sign_data(data),
        headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
        timeout=5,
    )
    # Let the SDK check the signature over the raw node text.
    node = alipay_client._verify_and_return_sync_response(
        response.text, "alipay_trade_precreate_response"
    )
    assert node["code"] == "10000" and node["qr_code"].endswith(trade)


def _time_expire(seconds: float) -> str:
    return (dt.datetime.now(CHINA) + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


def test_time_expire_is_enforced(alipay_client: AliPay, control: SandboxControl) -> None:
    expired, lenient = otn(), otn()
    for trade in (expired, lenient):
        answer = alipay_client.api_alipay_trade_precreate(
            subject="x", out_trade_no=trade, total_amount="1.00", time_expire=_time_expire(-1)
        )
        assert answer["code"] == "10000"
    assert (
        alipay_client.api_alipay_trade_query(out_trade_no=expired)["trade_status"] == "TRADE_CLOSED"
    )
    refused = control.pay("alipay", expired)
    assert refused.status_code == 409 and refused.json()["code"] == "trade_expired"
    entry = control.trade(expired)
    assert entry is not None and entry["status"] == "CLOSED" and entry["expired"] is True

    control.set_faults(ignore_time_expire=1)
    assert control.pay("alipay", lenient).status_code == 200


def test_timeout_express_is_accepted(alipay_client: AliPay, control: SandboxControl) -> None:
    trade = otn()
    before = dt.datetime.now(dt.UTC)
    alipay_client.api_alipay_trade_precreate(
        subject="x", out_trade_no=trade, total_amount="1.00", timeout_express="90m"
    )
    entry = control.trade(trade)
    assert entry is not None
    expires = dt.datetime.fromisoformat(entry["expires_at"])
    assert dt.timedelta(minutes=89) < expires - before < dt.timedelta(minutes=91)
    bad = alipay_client.api_alipay_trade_precreate(
        subject="x", out_trade_no=otn(), total_amount="1.00", timeout_express="1.5h"
    )
    assert bad["sub_code"] == "ACQ.INVALID_PARAMETER"


def test_page_pay_cashier_and_signed_return(
    alipay_client: AliPay,
    control: SandboxControl,
    receiver: Receiver,
    sandbox_gateway: SandboxProcess,
) -> None:
    trade = otn()
    order = alipay_client.api_alipay_trade_page_pay(
        subject="Oolong",
        out_trade_no=trade,
        total_amount="12.50",
        return_url="http://shop.example/payments/return/alipay/?from=sandbox",
        notify_url=receiver.url("/ali"),
    )
    session = browser()
    first = session.get(
        f"{sandbox_gateway.base_url}/gateway.do?{order}", allow_redirects=False, timeout=5
    )
    assert first.status_code == 302
    cashier_url = first.headers["Location"]
    assert cashier_url == f"{sandbox_gateway.base_url}/cashier/alipay/{trade}"

    page = session.get(cashier_url, timeout=5)
    assert page.status_code == 200
    assert "¥12.50" in page.text and "Unpaid" in page.text and "<svg" in page.text
    assert "http://" not in page.text.replace(sandbox_gateway.base_url, "")  # no external assets

    paid = session.post(cashier_url + "/pay", timeout=5)
    assert paid.status_code == 200 and "Paid" in paid.text
    link = re.search(r'id="return-link" href="([^"]+)"', paid.text)
    assert link is not None
    href = link.group(1).replace("&amp;", "&")
    assert href.startswith("http://shop.example/payments/return/alipay/?from=sandbox&")
    params = dict(parse_qsl(urlsplit(href).query))
    params.pop("from")
    assert params["method"] == "alipay.trade.page.pay.return"
    assert params["out_trade_no"] == trade and params["total_amount"] == "12.50"
    signature = params.pop("sign")
    assert alipay_client.verify(params, signature)

    (notify,) = receiver.wait_for(1, "/ali")
    assert verify_notify(alipay_client, notify.body)["out_trade_no"] == trade
    assert control.pay("alipay", trade).status_code == 409


@pytest.mark.parametrize("product_code", ["QUICK_WAP_WAY", "QUICK_WAP_PAY"])
def test_wap_pay_accepts_both_product_codes(
    alipay_client: AliPay,
    control: SandboxControl,
    sandbox_gateway: SandboxProcess,
    product_code: str,
) -> None:
    trade = otn()
    order = alipay_client.api_alipay_trade_wap_pay(
        subject="x", out_trade_no=trade, total_amount="1.00", product_code=product_code
    )
    response = browser().get(
        f"{sandbox_gateway.base_url}/gateway.do?{order}", allow_redirects=False, timeout=5
    )
    assert response.status_code == 302
    entry = control.trade(trade)
    assert entry is not None and entry["kind"] == "WAP" and entry["status"] == "NOTPAY"


def test_app_pay_order_string(
    alipay_client: AliPay,
    control: SandboxControl,
    receiver: Receiver,
    sandbox_gateway: SandboxProcess,
) -> None:
    trade = otn()
    order_string = alipay_client.api_alipay_trade_app_pay(
        subject="x", out_trade_no=trade, total_amount="2.00", notify_url=receiver.url("/ali")
    )
    # The harness plays the Alipay app: it brings the order string to the gateway.
    response = browser().get(
        f"{sandbox_gateway.base_url}/gateway.do?{order_string}", allow_redirects=False, timeout=5
    )
    assert response.status_code == 302
    assert control.pay("alipay", trade).status_code == 200
    (notify,) = receiver.wait_for(1, "/ali")
    assert verify_notify(alipay_client, notify.body)["total_amount"] == "2.00"


def test_wrong_product_code_shows_error_page(
    alipay_client: AliPay, sandbox_gateway: SandboxProcess
) -> None:
    order = alipay_client.api_alipay_trade_page_pay(
        subject="x", out_trade_no=otn(), total_amount="1.00", product_code="QUICK_WAP_WAY"
    )
    response = browser().get(
        f"{sandbox_gateway.base_url}/gateway.do?{order}", allow_redirects=False, timeout=5
    )
    assert response.status_code == 400 and "ACQ.INVALID_PARAMETER" in response.text


def test_notify_resent_until_acknowledged(
    alipay_client: AliPay, control: SandboxControl, receiver: Receiver
) -> None:
    trade = otn()
    alipay_client.api_alipay_trade_precreate(
        subject="x", out_trade_no=trade, total_amount="1.00", notify_url=receiver.url("/ali")
    )
    # Anything but the exact body "success" is a failure, including "success" with a newline.
    receiver.plan = [(200, b"fail"), (200, b"success\n"), (500, b"success")]
    control.pay("alipay", trade)
    attempts = receiver.wait_for(4, "/ali", timeout=8)
    ids = {dict(parse_qsl(a.body.decode()))["notify_id"] for a in attempts}
    assert len(ids) == 1  # re-sends of one notification keep its notify_id
    for attempt in attempts:
        verify_notify(alipay_client, attempt.body)
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    assert all(gap > 0.8 for gap in gaps), gaps  # SANDBOX_NOTIFY_SCHEDULE=1,1,1
    time.sleep(1.5)
    assert len(receiver.captured("/ali")) == 4  # acknowledged: no more
    (log,) = control.notifications(trade)
    assert log["acked"] is True and len(log["attempts"]) == 4


def test_notify_gives_up_after_schedule(
    alipay_client: AliPay, control: SandboxControl, receiver: Receiver
) -> None:
    trade = otn()
    alipay_client.api_alipay_trade_precreate(
        subject="x", out_trade_no=trade, total_amount="1.00", notify_url=receiver.url("/ali")
    )
    receiver.default = (200, b"fail")
    control.pay("alipay", trade)
    control.wait_until(lambda: control.notifications(trade)[0]["gave_up"], timeout=8)
    assert len(receiver.captured("/ali")) == 4  # the first delivery and three retries


def test_bill_download(alipay_client: AliPay, control: SandboxControl) -> None:
    paid, refunded, unpaid = otn(), otn(), otn()
    for trade, amount in ((paid, "19.99"), (refunded, "30.00"), (unpaid, "5.00")):
        alipay_client.api_alipay_trade_precreate(
            subject="乌龙茶", out_trade_no=trade, total_amount=amount
        )
    control.pay("alipay", paid)
    control.pay("alipay", refunded)
    alipay_client.api_alipay_trade_refund("10.00", out_trade_no=refunded, out_request_no="RF1")

    today = dt.datetime.now(CHINA).strftime("%Y-%m-%d")
    answer = alipay_client.server_api(
        "alipay.data.dataservice.bill.downloadurl.query",
        biz_content={"bill_type": "trade", "bill_date": today},
    )
    assert answer["code"] == "10000"
    archive = zipfile.ZipFile(
        io.BytesIO(browser().get(answer["bill_download_url"], timeout=5).content)
    )
    names = archive.namelist()
    detail_name = next(n for n in names if n.endswith("_业务明细.csv"))
    summary_name = next(n for n in names if n.endswith("_业务明细(汇总).csv"))

    detail_text = archive.read(detail_name).decode("gbk")
    assert detail_text.startswith("#")
    rows = list(
        csv.DictReader(line for line in io.StringIO(detail_text) if not line.startswith("#"))
    )
    by_key = {(r["商户订单号"], r["业务类型"]): r for r in rows}
    assert by_key[(paid, "交易")]["订单金额（元）"] == "19.99"
    assert by_key[(refunded, "交易")]["商家实收（元）"] == "30.00"
    assert by_key[(refunded, "退款")]["商家实收（元）"] == "-10.00"
    assert by_key[(refunded, "退款")]["退款批次号/请求号"] == "RF1"
    assert not any(r["商户订单号"] == unpaid for r in rows)
    assert by_key[(paid, "交易")]["商品名称"] == "乌龙茶"

    summary_text = archive.read(summary_name).decode("gbk")
    summary = list(
        csv.DictReader(line for line in io.StringIO(summary_text) if not line.startswith("#"))
    )
    assert summary[-1]["交易订单总笔数"] == "2" and summary[-1]["退款订单总笔数"] == "1"

    future = (dt.datetime.now(CHINA) + dt.timedelta(days=2)).strftime("%Y-%m-%d")
    missing = alipay_client.server_api(
        "alipay.data.dataservice.bill.downloadurl.query",
        biz_content={"bill_type": "trade", "bill_date": future},
    )
    assert missing["sub_code"] == "BILL_NOT_EXIST"
