"""Both adapters over real HTTP against the sandbox gateway (``tests/support/sandbox.py``).

One sandbox process serves the whole module; every test starts from ``reset``. Timeouts are
short (read 1.5 s) and the sandbox's ``hang_seconds`` is 3 s, so a hang is a timeout to us.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from payments.gateways import signing
from payments.gateways.base import (
    Client,
    CloseOutcome,
    PrepayOutcome,
    PrepayRequest,
    PrepayResult,
    RefundOutcome,
    RefundRequest,
    TradeOutcome,
)
from tests.gateways.conftest import Live, NotifyReceiver

CHANNELS = ("alipay", "wechat")
CLIENTS = (Client.PC, Client.WAP, Client.APP)


def new_otn() -> str:
    return "GT" + uuid.uuid4().hex[:20].upper()


def prepay(
    live: Live,
    channel: str,
    client: Client = Client.PC,
    *,
    amount: int = 1234,
    notify_url: str = "http://127.0.0.1:9/notify",
    otn: str | None = None,
) -> tuple[str, PrepayResult]:
    otn = otn or new_otn()
    request = PrepayRequest(
        out_trade_no=otn,
        amount=amount,
        currency="CNY",
        description="测试商品",
        client=client,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30),
        notify_url=notify_url,
        return_url="http://127.0.0.1:9/return",
        payer_client_ip="127.0.0.1",
    )
    return otn, live.gateway(channel).prepay(request)


def open_alipay_client_trade(live: Live, result: PrepayResult) -> None:
    """What the shopper's browser (wap) or the Alipay app (app) does with a signed order."""
    assert result.action is not None
    if result.action.type == "redirect":
        url = result.action.url
    else:
        url = f"{live.alipay.gateway_url}?{result.action.params['order_string']}"
    with requests.Session() as browser:
        browser.trust_env = False
        response = browser.get(url, allow_redirects=False, timeout=5)
    assert response.status_code == 302, response.text[:500]
    assert "/cashier/alipay/" in response.headers["Location"]


def paid_trade(live: Live, channel: str, amount: int = 1234) -> str:
    otn, result = prepay(live, channel, amount=amount)
    assert result.outcome == PrepayOutcome.CREATED, result.error
    assert live.control.pay(channel, otn).status_code == 200
    return otn


def refund_request(otn: str, out_refund_no: str, amount: int, total: int = 1234) -> RefundRequest:
    return RefundRequest(
        out_trade_no=otn,
        out_refund_no=out_refund_no,
        amount=amount,
        total_amount=total,
        currency="CNY",
        reason="测试退款",
        notify_url="",
    )


# --- the happy paths --------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: str(c))
@pytest.mark.parametrize("channel", CHANNELS)
def test_prepay_query_pay_query(live: Live, channel: str, client: Client) -> None:
    gateway = live.gateway(channel)
    otn, result = prepay(live, channel, client, amount=4321)
    assert result.outcome == PrepayOutcome.CREATED, result.error
    assert result.action is not None
    expected_type = {Client.PC: "qr", Client.WAP: "redirect", Client.APP: "app"}[client]
    assert result.action.type == expected_type

    before = gateway.query(otn)
    if channel == "alipay" and client != Client.PC:
        # wap/app orders are carried by the shopper's client: the gateway has not seen it yet.
        assert before.outcome == TradeOutcome.NOT_FOUND, before
        open_alipay_client_trade(live, result)
        before = gateway.query(otn)
    assert before.outcome == TradeOutcome.NOT_PAID, before

    trade = live.control.trade(otn)
    assert trade is not None and trade["amount"] == 4321
    # time_expire reached the gateway as the order's deadline (to the second).
    expires = dt.datetime.fromisoformat(trade["expires_at"].replace("Z", "+00:00"))
    assert abs(expires - (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30))) < dt.timedelta(
        seconds=30
    )

    assert live.control.pay(channel, otn).status_code == 200
    after = gateway.query(otn)
    assert after.outcome == TradeOutcome.PAID, after
    assert after.amount == 4321
    assert after.currency == "CNY"
    assert after.gateway_trade_no
    assert after.paid_at is not None
    assert after.raw


@pytest.mark.parametrize("channel", CHANNELS)
def test_query_unknown_trade(live: Live, channel: str) -> None:
    assert live.gateway(channel).query(new_otn()).outcome == TradeOutcome.NOT_FOUND


@pytest.mark.parametrize("channel", CHANNELS)
def test_prepay_again_after_payment_is_rejected(live: Live, channel: str) -> None:
    otn = paid_trade(live, channel)
    _, again = prepay(live, channel, otn=otn)
    assert again.outcome == PrepayOutcome.REJECTED, again


@pytest.mark.parametrize("channel", CHANNELS)
def test_close(live: Live, channel: str) -> None:
    gateway = live.gateway(channel)
    otn, _ = prepay(live, channel)
    assert gateway.close(otn).outcome == CloseOutcome.CLOSED
    assert gateway.query(otn).outcome == TradeOutcome.CLOSED
    assert gateway.close(otn).outcome == CloseOutcome.CLOSED  # closing twice is fine
    assert live.control.pay(channel, otn).status_code == 409
    assert gateway.close(new_otn()).outcome == CloseOutcome.CLOSED  # never opened


@pytest.mark.parametrize("channel", CHANNELS)
def test_close_a_paid_trade(live: Live, channel: str) -> None:
    otn = paid_trade(live, channel)
    assert live.gateway(channel).close(otn).outcome == CloseOutcome.PAID


@pytest.mark.parametrize("channel", CHANNELS)
def test_refund_and_refund_query(live: Live, channel: str) -> None:
    gateway = live.gateway(channel)
    otn = paid_trade(live, channel)
    out_refund_no = "RF" + uuid.uuid4().hex[:16]
    missing = gateway.refund_query(out_trade_no=otn, out_refund_no=out_refund_no)
    assert missing.outcome == RefundOutcome.NOT_FOUND, missing

    result = gateway.refund(refund_request(otn, out_refund_no, 234))
    assert result.outcome in (RefundOutcome.SUCCEEDED, RefundOutcome.PENDING), result
    assert result.amount == 234

    def settled() -> Any:
        found = gateway.refund_query(out_trade_no=otn, out_refund_no=out_refund_no)
        return found if found.outcome == RefundOutcome.SUCCEEDED else None

    found = live.control.wait_until(settled, timeout=5)
    assert found.amount == 234
    assert found.out_refund_no == out_refund_no
    assert gateway.query(otn).outcome == TradeOutcome.PAID  # refunded trades were still paid


@pytest.mark.parametrize("channel", CHANNELS)
def test_refund_is_idempotent(live: Live, channel: str) -> None:
    gateway = live.gateway(channel)
    otn = paid_trade(live, channel)
    first = gateway.refund(refund_request(otn, "RF-ONCE-1", 500))
    second = gateway.refund(refund_request(otn, "RF-ONCE-1", 500))
    for result in (first, second):
        assert result.outcome in (RefundOutcome.SUCCEEDED, RefundOutcome.PENDING), result
    trade = live.control.trade(otn)
    assert trade is not None
    assert [r["out_refund_no"] for r in trade["refunds"]] == ["RF-ONCE-1"]
    assert trade["refunded"] == 500


@pytest.mark.parametrize("channel", CHANNELS)
def test_refund_beyond_the_paid_amount_fails(live: Live, channel: str) -> None:
    otn = paid_trade(live, channel, amount=1234)
    result = live.gateway(channel).refund(refund_request(otn, "RF-TOO-MUCH", 1235))
    assert result.outcome == RefundOutcome.FAILED, result
    assert live.control.trade(otn)["refunds"] == []


# --- faults: never "failed" or "closed" when we cannot know --------------------------------


def _assert_unknown(outcome: Any, error: str) -> None:
    assert outcome == "unknown", (outcome, error)
    assert error


@pytest.mark.parametrize("channel", CHANNELS)
def test_fault_query_error(live: Live, channel: str) -> None:
    otn = paid_trade(live, channel)
    live.control.set_faults(query_error=1)
    result = live.gateway(channel).query(otn)
    _assert_unknown(result.outcome, result.error)
    refund = live.gateway(channel).refund_query(out_trade_no=otn, out_refund_no="RF-NONE")
    _assert_unknown(refund.outcome, refund.error)


@pytest.mark.parametrize("channel", CHANNELS)
def test_fault_query_timeout(live: Live, channel: str) -> None:
    otn = paid_trade(live, channel)
    live.control.set_faults(query_timeout=1)
    result = live.gateway(channel).query(otn)
    _assert_unknown(result.outcome, result.error)
    assert "timeout" in result.error


@pytest.mark.parametrize("channel", CHANNELS)
def test_fault_prepay_timeout(live: Live, channel: str) -> None:
    live.control.set_faults(prepay_timeout=1)
    otn, result = prepay(live, channel)
    _assert_unknown(result.outcome, result.error)
    # The gateway did create it: that is exactly why the answer must be UNKNOWN.
    live.control.set_faults(prepay_timeout=0)
    assert live.gateway(channel).query(otn).outcome == TradeOutcome.NOT_PAID


@pytest.mark.parametrize("channel", CHANNELS)
def test_fault_close_error(live: Live, channel: str) -> None:
    otn, _ = prepay(live, channel)
    live.control.set_faults(close_error=1)
    result = live.gateway(channel).close(otn)
    _assert_unknown(result.outcome, result.error)
    live.control.set_faults(close_error=0)
    assert live.gateway(channel).query(otn).outcome == TradeOutcome.NOT_PAID


@pytest.mark.parametrize("channel", CHANNELS)
def test_fault_refund_error(live: Live, channel: str) -> None:
    otn = paid_trade(live, channel)
    live.control.set_faults(refund_error=1)
    result = live.gateway(channel).refund(refund_request(otn, "RF-FAULT-1", 100))
    _assert_unknown(result.outcome, result.error)
    # Retrying with the same out_refund_no later refunds exactly once.
    live.control.set_faults(refund_error=0)
    retry = live.gateway(channel).refund(refund_request(otn, "RF-FAULT-1", 100))
    assert retry.outcome in (RefundOutcome.SUCCEEDED, RefundOutcome.PENDING), retry
    assert live.control.trade(otn)["refunded"] == 100


@pytest.mark.parametrize("channel", CHANNELS)
def test_fault_ignore_close(live: Live, channel: str) -> None:
    """The gateway says "closed" but the trade stays payable: nothing an adapter can detect,
    so a later query must still report the payment (the caller's late-payment path)."""
    gateway = live.gateway(channel)
    otn, _ = prepay(live, channel)
    live.control.set_faults(ignore_close=1)
    assert gateway.close(otn).outcome == CloseOutcome.CLOSED
    assert live.control.pay(channel, otn).status_code == 200
    assert gateway.query(otn).outcome == TradeOutcome.PAID


def test_alipay_return_parameters_verify(live: Live) -> None:
    otn, result = prepay(live, "alipay", Client.WAP)
    open_alipay_client_trade(live, result)
    assert live.control.pay("alipay", otn).status_code == 200
    with requests.Session() as browser:
        browser.trust_env = False
        page = browser.get(f"{live.base_url}/cashier/alipay/{otn}", timeout=5).text
    match = re.search(r'id="return-link" href="([^"]+)"', page)
    assert match, page[:500]
    link = urlsplit(html.unescape(match[1]))
    assert f"{link.scheme}://{link.netloc}{link.path}" == "http://127.0.0.1:9/return"
    params = dict(parse_qsl(link.query, keep_blank_values=True))
    info = live.alipay.verify_return(params)
    assert info.verified and info.out_trade_no == otn
    assert not live.alipay.verify_return({**params, "total_amount": "0.01"}).verified
    # WeChat signs no return: the caller must query.
    assert not live.wechat.verify_return({"out_trade_no": otn}).verified


# --- notifications from the sandbox verify with our adapters ----------------------------------


@pytest.mark.parametrize("channel", CHANNELS)
def test_sandbox_notification_verifies(
    live: Live, notify_receiver: NotifyReceiver, channel: str
) -> None:
    gateway = live.gateway(channel)
    ack = gateway.acknowledgement(ok=True)
    notify_receiver.answers[channel] = (ack.status, ack.body, ack.content_type or "text/plain")
    otn, result = prepay(live, channel, amount=777, notify_url=f"{notify_receiver.url}/{channel}")
    assert result.outcome == PrepayOutcome.CREATED
    assert live.control.pay(channel, otn).status_code == 200
    headers, body, content_type = live.control.wait_until(
        lambda: (notify_receiver.for_channel(channel) or [None])[0], timeout=5
    )
    note = gateway.parse_notification(headers=headers, body=body, content_type=content_type)
    assert note.kind == "payment"
    assert note.trade is not None
    assert note.trade.out_trade_no == otn
    assert note.trade.outcome == TradeOutcome.PAID
    assert note.trade.amount == 777
    assert note.event_id
    # Our acknowledgement satisfied the sandbox, and the event id is the gateway's notify id.
    (delivered,) = live.control.wait_until(
        lambda: [n for n in live.control.notifications(otn) if n["acked"]], timeout=5
    )
    assert delivered["notify_id"] == note.event_id
    assert len(delivered["attempts"]) == 1


# --- statements ----------------------------------------------------------------------------


@pytest.mark.parametrize("channel", CHANNELS)
def test_statement_lists_the_paid_trade_and_refund(live: Live, channel: str) -> None:
    gateway = live.gateway(channel)
    otn = paid_trade(live, channel, amount=2345)
    refund = gateway.refund(refund_request(otn, "RF-BILL-1", 345, total=2345))
    assert refund.outcome in (RefundOutcome.SUCCEEDED, RefundOutcome.PENDING)
    if channel == "wechat":  # its refunds settle a moment later
        live.control.wait_until(
            lambda: (
                gateway.refund_query(out_trade_no=otn, out_refund_no="RF-BILL-1").outcome
                == RefundOutcome.SUCCEEDED
            ),
            timeout=5,
        )
    today = signing.to_china_time(dt.datetime.now(dt.UTC)).date()
    lines = [line for line in gateway.fetch_statement(today) if line.out_trade_no == otn]
    assert [(x.kind, x.amount, x.out_refund_no) for x in lines] == [
        ("payment", 2345, ""),
        ("refund", 345, "RF-BILL-1"),
    ]
    assert all(x.gateway_trade_no and x.currency == "CNY" for x in lines)
