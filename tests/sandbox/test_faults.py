"""Every fault in contract.md, observably happening, seen through the official SDKs.

SDK limits met here: python-alipay-sdk surfaces a 5xx as ``urllib.error.HTTPError`` and a hang
as a socket timeout (it cannot tell the two apart from a business answer otherwise); wechatpayv3
returns 5xx statuses as ``(code, text)`` and lets ``requests`` exceptions through for timeouts
and dropped connections.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import secrets
import socket
import time
import urllib.error
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from alipay import AliPay
from wechatpayv3 import WeChatPay

from tests.sandbox.conftest import Receiver, make_alipay, make_wechat
from tests.support.sandbox import SandboxControl, SandboxProcess


def otn(prefix: str) -> str:
    return prefix + secrets.token_hex(8)


def ali_trade(client: AliPay, receiver: Receiver, amount: str = "1.00") -> str:
    trade = otn("A")
    answer = client.api_alipay_trade_precreate(
        subject="x", out_trade_no=trade, total_amount=amount, notify_url=receiver.url("/ali")
    )
    assert answer["code"] == "10000"
    return trade


def wx_trade(client: WeChatPay, total: int = 100) -> str:
    trade = otn("W")
    code, _ = client.pay(description="x", out_trade_no=trade, amount={"total": total})
    assert code == 200
    return trade


def notify_id(captured: Any) -> str:
    if captured.path == "/ali":
        return dict(parse_qsl(captured.body.decode()))["notify_id"]
    return str(json.loads(captured.body)["id"])


def test_fault_settings_are_validated_and_merged(
    control: SandboxControl, sandbox_gateway: SandboxProcess
) -> None:
    assert control.set_faults(query_error=0.25)["query_error"] == 0.25
    merged = control.set_faults(hang_seconds=2, notify_delay_seconds=3)
    assert (merged["query_error"], merged["hang_seconds"], merged["notify_delay_seconds"]) == (
        0.25,
        2,
        3,
    )
    session = requests.Session()
    session.trust_env = False
    for bad in (
        {"no_such_fault": 1},
        {"notify_drop": 1.5},
        {"notify_drop": -0.1},
        {"notify_drop": True},
        [1],
    ):
        response = session.post(f"{sandbox_gateway.base_url}/sandbox/faults", json=bad, timeout=5)
        assert response.status_code == 400, bad
    assert control.faults()["query_error"] == 0.25  # a rejected update changes nothing
    control.reset()
    assert control.faults()["query_error"] == 0 and control.faults()["hang_seconds"] == 15


def test_notify_drop(
    alipay_client: AliPay, wechat_client: WeChatPay, control: SandboxControl, receiver: Receiver
) -> None:
    control.set_faults(notify_drop=1)
    dropped_ali = ali_trade(alipay_client, receiver)
    dropped_wx = wx_trade(wechat_client)
    control.pay("alipay", dropped_ali)
    control.pay("wechat", dropped_wx)
    control.set_faults(notify_drop=0)  # drawn once per trade: later re-sends stay dropped
    delivered = ali_trade(alipay_client, receiver)
    control.pay("alipay", delivered)
    receiver.wait_for(1)
    time.sleep(2.2)  # past two retry intervals
    assert [notify_id(c) for c in receiver.captured()] == [
        control.notifications(delivered)[0]["notify_id"]
    ]
    for trade in (dropped_ali, dropped_wx):
        (log,) = control.notifications(trade)
        assert log["dropped"] is True and log["attempts"] == []
        entry = control.trade(trade)
        assert entry is not None and entry["status"] == "PAID"  # the money moved all the same


def test_notify_duplicate(
    alipay_client: AliPay, wechat_client: WeChatPay, control: SandboxControl, receiver: Receiver
) -> None:
    control.set_faults(notify_duplicate=1)
    receiver.default = (200, b"success")
    ali = ali_trade(alipay_client, receiver)
    control.pay("alipay", ali)
    first, second = receiver.wait_for(2, "/ali")
    assert notify_id(first) == notify_id(second)
    assert abs(first.at - second.at) < 0.5  # concurrent copies, not a retry

    wx = wx_trade(wechat_client)
    control.pay("wechat", wx)
    copies = receiver.wait_for(2, "/notify/wechat")
    assert len({notify_id(c) for c in copies}) == 1
    for copy in copies:
        assert wechat_client.callback(copy.headers, copy.body) is not None
    (log,) = control.notifications(wx)
    assert sorted(a["duplicate"] for a in log["attempts"]) == [False, True]


def test_notify_delay(alipay_client: AliPay, control: SandboxControl, receiver: Receiver) -> None:
    control.set_faults(notify_delay_seconds=1.5)
    trades = [ali_trade(alipay_client, receiver) for _ in range(4)]
    for trade in trades:
        control.pay("alipay", trade)
    receiver.wait_for(4, "/ali", timeout=6)
    delays = []
    for trade in trades:
        (log,) = control.notifications(trade)
        created = dt.datetime.fromisoformat(log["created_at"])
        first = dt.datetime.fromisoformat(log["attempts"][0]["at"])
        assert 0 <= log["delay"] <= 1.5
        assert (first - created).total_seconds() >= log["delay"] - 0.05
        delays.append(log["delay"])
    assert max(delays) > 0


def test_notify_reorder(alipay_client: AliPay, control: SandboxControl, receiver: Receiver) -> None:
    held, following = ali_trade(alipay_client, receiver), ali_trade(alipay_client, receiver)
    control.set_faults(notify_reorder=1)
    control.pay("alipay", held)
    time.sleep(0.5)
    assert receiver.captured("/ali") == []  # held back
    control.set_faults(notify_reorder=0)
    control.pay("alipay", following)
    first, second = receiver.wait_for(2, "/ali")
    order = [dict(parse_qsl(c.body.decode()))["out_trade_no"] for c in (first, second)]
    assert order == [following, held]
    assert control.notifications(held)[0]["reordered"] is True


def test_query_error(
    alipay_client: AliPay, wechat_client: WeChatPay, control: SandboxControl, receiver: Receiver
) -> None:
    ali, wx = ali_trade(alipay_client, receiver), wx_trade(wechat_client)
    control.set_faults(query_error=1)
    with pytest.raises(urllib.error.HTTPError) as error:
        alipay_client.api_alipay_trade_query(out_trade_no=ali)
    assert error.value.code >= 500
    code, _ = wechat_client.query(out_trade_no=wx)
    assert code >= 500
    # Only queries fail: other calls still work.
    assert alipay_client.api_alipay_trade_close(out_trade_no=ali)["code"] == "10000"


def test_query_timeout(
    sandbox_gateway: SandboxProcess,
    creds: dict[str, Any],
    control: SandboxControl,
    receiver: Receiver,
) -> None:
    impatient_ali = make_alipay(sandbox_gateway.base_url, creds, timeout=0.4)
    impatient_wx = make_wechat(
        sandbox_gateway.base_url, creds, receiver.url("/wx"), timeout=(2, 0.4)
    )
    ali, wx = ali_trade(impatient_ali, receiver), wx_trade(impatient_wx)
    control.set_faults(query_timeout=1, hang_seconds=1)
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        impatient_ali.api_alipay_trade_query(out_trade_no=ali)
    with pytest.raises(requests.exceptions.ReadTimeout):
        impatient_wx.query(out_trade_no=wx)
    patient = make_alipay(sandbox_gateway.base_url, creds, timeout=5)
    started = time.monotonic()
    assert patient.api_alipay_trade_query(out_trade_no=ali)["trade_status"] == "WAIT_BUYER_PAY"
    assert time.monotonic() - started >= 0.9  # it hung, then answered


def test_prepay_timeout_creates_the_trade(
    sandbox_gateway: SandboxProcess,
    creds: dict[str, Any],
    control: SandboxControl,
    receiver: Receiver,
) -> None:
    alipay_client = make_alipay(sandbox_gateway.base_url, creds, timeout=5)
    wechat_client = make_wechat(
        sandbox_gateway.base_url, creds, receiver.url("/wx"), timeout=(2, 5)
    )
    control.set_faults(prepay_timeout=1, hang_seconds=0.3)
    ali, wx = otn("A"), otn("W")
    with pytest.raises((http.client.RemoteDisconnected, urllib.error.URLError, ConnectionError)):
        alipay_client.api_alipay_trade_precreate(subject="x", out_trade_no=ali, total_amount="1.00")
    with pytest.raises(requests.exceptions.ConnectionError):
        wechat_client.pay(description="x", out_trade_no=wx, amount={"total": 100})
    control.set_faults(prepay_timeout=0)
    # The answer never came, but the trade exists and can be paid.
    assert (
        alipay_client.api_alipay_trade_query(out_trade_no=ali)["trade_status"] == "WAIT_BUYER_PAY"
    )
    assert json.loads(wechat_client.query(out_trade_no=wx)[1])["trade_state"] == "NOTPAY"
    assert control.pay("alipay", ali).status_code == 200
    assert control.pay("wechat", wx).status_code == 200


def test_close_error(
    alipay_client: AliPay, wechat_client: WeChatPay, control: SandboxControl, receiver: Receiver
) -> None:
    ali, wx = ali_trade(alipay_client, receiver), wx_trade(wechat_client)
    control.set_faults(close_error=1)
    with pytest.raises(urllib.error.HTTPError):
        alipay_client.api_alipay_trade_close(out_trade_no=ali)
    code, _ = wechat_client.close(wx)
    assert code >= 500
    for trade in (ali, wx):  # nothing was closed
        entry = control.trade(trade)
        assert entry is not None and entry["status"] == "NOTPAY"
    assert control.pay("alipay", ali).status_code == 200


def test_refund_error(
    alipay_client: AliPay, wechat_client: WeChatPay, control: SandboxControl, receiver: Receiver
) -> None:
    ali, wx = ali_trade(alipay_client, receiver), wx_trade(wechat_client)
    control.pay("alipay", ali)
    control.pay("wechat", wx)
    control.set_faults(refund_error=1)
    with pytest.raises(urllib.error.HTTPError):
        alipay_client.api_alipay_trade_refund("1.00", out_trade_no=ali, out_request_no="R1")
    code, _ = wechat_client.refund(
        "R" + wx, {"refund": 100, "total": 100, "currency": "CNY"}, out_trade_no=wx
    )
    assert code >= 500
    for trade in (ali, wx):  # no refund was made
        entry = control.trade(trade)
        assert entry is not None and entry["refunded"] == 0 and entry["refunds"] == []


def test_ignore_close(
    alipay_client: AliPay, wechat_client: WeChatPay, control: SandboxControl, receiver: Receiver
) -> None:
    ali, wx = ali_trade(alipay_client, receiver), wx_trade(wechat_client)
    control.set_faults(ignore_close=1)
    assert alipay_client.api_alipay_trade_close(out_trade_no=ali)["code"] == "10000"
    assert wechat_client.close(wx)[0] == 204
    # The merchant is told "closed" ...
    assert alipay_client.api_alipay_trade_query(out_trade_no=ali)["trade_status"] == "TRADE_CLOSED"
    assert json.loads(wechat_client.query(out_trade_no=wx)[1])["trade_state"] == "CLOSED"
    # ... but the truth is that the buyer can still pay.
    for channel, trade in (("alipay", ali), ("wechat", wx)):
        entry = control.trade(trade)
        assert entry is not None and entry["status"] == "NOTPAY" and entry["close_ignored"] is True
        assert control.pay(channel, trade).status_code == 200
    (notify,) = receiver.wait_for(1, "/ali")
    assert dict(parse_qsl(notify.body.decode()))["trade_status"] == "TRADE_SUCCESS"
    assert alipay_client.api_alipay_trade_query(out_trade_no=ali)["trade_status"] == "TRADE_SUCCESS"
    assert json.loads(wechat_client.query(out_trade_no=wx)[1])["trade_state"] == "SUCCESS"
