"""The control API (contract.md) and the harness helpers other suites import."""

from __future__ import annotations

import secrets
import time
from typing import Any

import requests
from alipay import AliPay
from wechatpayv3 import WeChatPay

from tests.sandbox.conftest import Receiver, make_alipay
from tests.support.sandbox import SandboxControl, SandboxProcess, start_sandbox


def _http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def test_ledger_shape_and_filter(
    alipay_client: AliPay, wechat_client: WeChatPay, control: SandboxControl
) -> None:
    ali, wx = "A" + secrets.token_hex(6), "W" + secrets.token_hex(6)
    alipay_client.api_alipay_trade_precreate(subject="x", out_trade_no=ali, total_amount="19.99")
    wechat_client.pay(description="x", out_trade_no=wx, amount={"total": 250})
    paid = control.pay("wechat", wx).json()
    assert paid["status"] == "PAID" and paid["paid_at"]

    trades = control.ledger()["trades"]
    assert {t["out_trade_no"] for t in trades} == {ali, wx}
    entry = control.trade(ali)
    assert entry is not None
    assert {
        k: entry[k]
        for k in ("channel", "amount", "currency", "status", "paid_at", "refunded", "refunds")
    } == {
        "channel": "alipay",
        "amount": 1999,
        "currency": "CNY",
        "status": "NOTPAY",
        "paid_at": None,
        "refunded": 0,
        "refunds": [],
    }
    assert [t["out_trade_no"] for t in control.ledger(wx)["trades"]] == [wx]
    assert control.trade("nope") is None


def test_pay_errors(control: SandboxControl, sandbox_gateway: SandboxProcess) -> None:
    missing = control.pay("alipay", "nope")
    assert missing.status_code == 404 and missing.json()["code"] == "trade_not_found"
    assert control.pay("paypal", "nope").status_code == 404
    bad = _http().post(f"{sandbox_gateway.base_url}/sandbox/pay", data="not json", timeout=5)
    assert bad.status_code == 400
    unknown_page = _http().get(f"{sandbox_gateway.base_url}/cashier/alipay/nope", timeout=5)
    assert unknown_page.status_code == 404


def test_reset_forgets_trades_and_queued_notifications(
    alipay_client: AliPay, control: SandboxControl, receiver: Receiver
) -> None:
    trade = "A" + secrets.token_hex(6)
    alipay_client.api_alipay_trade_precreate(
        subject="x", out_trade_no=trade, total_amount="1.00", notify_url=receiver.url("/ali")
    )
    receiver.default = (500, b"fail")
    control.set_faults(ignore_close=1)
    control.pay("alipay", trade)
    receiver.wait_for(1, "/ali")
    control.reset()
    assert control.ledger() == {"trades": []}
    assert control.notifications() == []
    assert control.faults()["ignore_close"] == 0
    time.sleep(1.5)  # a retry would have been due after 1 s
    assert len(receiver.captured("/ali")) == 1


def test_cashier_pay_button_for_wechat(
    wechat_client: WeChatPay, sandbox_gateway: SandboxProcess, control: SandboxControl
) -> None:
    trade = "W" + secrets.token_hex(6)
    wechat_client.pay(description="Pu-erh", out_trade_no=trade, amount={"total": 4200})
    url = f"{sandbox_gateway.base_url}/cashier/wechat/{trade}"
    page = _http().get(url, timeout=5)
    assert page.status_code == 200
    assert "¥42.00" in page.text and "Pu-erh" in page.text and "Unpaid" in page.text
    assert f'action="{url}/pay?lang=en"' in page.text and "<svg" in page.text
    paid = _http().post(url + "/pay", timeout=5)
    assert paid.status_code == 200 and "Paid" in paid.text and "<form" not in paid.text
    again = _http().post(url + "/pay", timeout=5)
    assert again.status_code == 409
    entry = control.trade(trade)
    assert entry is not None and entry["status"] == "PAID"


def _drop_pattern(proc: SandboxProcess, creds: dict[str, Any]) -> list[bool]:
    control = SandboxControl(proc.base_url)
    client = make_alipay(proc.base_url, creds)
    control.reset()
    control.set_faults(notify_drop=0.5)
    pattern = []
    for index in range(8):
        trade = f"SEED{index:04d}"
        client.api_alipay_trade_precreate(
            subject="x", out_trade_no=trade, total_amount="1.00", notify_url="http://127.0.0.1:9/x"
        )
        control.pay("alipay", trade)
        pattern.append(control.notifications(trade)[0]["dropped"])
    return pattern


def test_seeded_sandbox_replays_the_same_faults(creds: dict[str, Any]) -> None:
    with start_sandbox(extra_env={"SANDBOX_SEED": "7", "SANDBOX_NOTIFY_SCHEDULE": ""}) as proc:
        first = _drop_pattern(proc, creds)
        second = _drop_pattern(proc, creds)  # reset re-seeds the RNG
    assert first == second
    assert True in first and False in first


def test_cashier_speaks_the_shoppers_language_and_shows_beijing_time(
    wechat_client: WeChatPay, sandbox_gateway: SandboxProcess
) -> None:
    trade = "W" + secrets.token_hex(6)
    wechat_client.pay(
        description="Pu-erh",
        out_trade_no=trade,
        amount={"total": 4200},
        time_expire="2030-01-02T03:04:05+08:00",
    )
    url = f"{sandbox_gateway.base_url}/cashier/wechat/{trade}"
    page = _http().get(url, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}, timeout=5)
    assert '<html lang="zh-Hans">' in page.text and "待支付" in page.text
    assert "请在 2030-01-02 03:04 CST (UTC+08:00) 前支付" in page.text  # not an ISO timestamp
    assert f'href="{url}?lang=en"' in page.text  # the switch
    english = _http().get(url + "?lang=en", headers={"Accept-Language": "zh-CN"}, timeout=5)
    assert "Unpaid" in english.text and "Pay before 2030-01-02 03:04 CST" in english.text
    paid = _http().post(url + "/pay?lang=zh", timeout=5)  # the form keeps the language
    assert paid.status_code == 200 and "支付成功" in paid.text
