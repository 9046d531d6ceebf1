"""Apply-pay and callbacks over real HTTP: the shop's API on the live server, the sandbox
gateway as a separate process, signed notifications from the sandbox to the shop."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from orders.models import Order
from payments.models import GatewayEvent, PaymentAttempt
from refunds.models import Refund
from tests.conftest import make_product

pytestmark = pytest.mark.django_db(transaction=True)


class Shopper:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.token = ""
        self.order_id = ""

    def order(self, sku: str = "TEA", quantity: int = 1) -> dict[str, Any]:
        r = self.http.post(
            f"{self.base}/api/v1/orders/",
            json={"items": [{"sku": sku, "quantity": quantity}], "email": "e2e@example.com"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        data = r.json()
        self.token, self.order_id = data["access_token"], data["id"]
        return data

    def pay(self, channel: str, client: str) -> requests.Response:
        return self.http.post(
            f"{self.base}/api/v1/orders/{self.order_id}/pay",
            json={"channel": channel, "client": client},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )

    def view(self) -> dict[str, Any]:
        r = self.http.get(
            f"{self.base}/api/v1/orders/{self.order_id}/",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        assert r.status_code == 200
        return r.json()


def wait_for(probe, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def open_in_sandbox(attempt: dict[str, Any]) -> None:
    """What the shopper's browser or app does with a wap/app action before paying."""
    action = attempt["action"]
    if action["type"] == "redirect":
        requests.get(action["url"], timeout=10, allow_redirects=False)
    elif action["type"] == "app" and "order_string" in action.get("params", {}):
        base = PaymentAttempt.objects.get(public_id=attempt["id"])
        from django.conf import settings

        requests.get(
            f"{settings.PAYMENT_GATEWAYS['alipay']['GATEWAY_URL']}?{action['params']['order_string']}",
            timeout=10,
            allow_redirects=False,
        )
        assert base


@pytest.fixture
def shopper(gateways_at_sandbox, live_server) -> Shopper:
    make_product("TEA", price=2599, stock=50)
    s = Shopper(live_server.url)
    s.order()
    return s


@pytest.mark.parametrize("channel", ["alipay", "wechat"])
@pytest.mark.parametrize("client", ["pc", "wap", "app"])
def test_happy_path_each_channel_and_client(
    shopper: Shopper, sandbox, channel: str, client: str
) -> None:
    r = shopper.pay(channel, client)
    assert r.status_code == 201, r.text
    attempt = r.json()
    assert attempt["status"] == "paying"
    assert attempt["amount"] == {"amount": 2599, "currency": "CNY"}
    expected_type = {"pc": "qr", "wap": "redirect", "app": "app"}[client]
    assert attempt["action"]["type"] == expected_type
    open_in_sandbox(attempt)
    paid = sandbox.pay(channel, attempt["out_trade_no"])
    assert paid.status_code == 200, paid.text
    wait_for(lambda: shopper.view()["status"] == "paid")
    view = shopper.view()
    assert view["payments"][0]["status"] == "succeeded"
    assert view["paid_at"]
    event = GatewayEvent.objects.filter(kind="notification", verified=True).first()
    assert event is not None and event.processed_at is not None
    # Paid: answered from the paid-result cache or the database, never a new trade.
    again = shopper.pay("wechat" if channel == "alipay" else "alipay", "pc")
    assert again.status_code == 409 and again.json()["code"] == "order_already_paid"
    assert len(sandbox.ledger()["trades"]) == 1


def test_same_channel_and_client_returns_the_same_live_attempt(shopper: Shopper, sandbox) -> None:
    first = shopper.pay("wechat", "pc")
    second = shopper.pay("wechat", "pc")
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["out_trade_no"] == second.json()["out_trade_no"]
    assert first.json()["action"] == second.json()["action"]
    assert len(sandbox.ledger()["trades"]) == 1


def test_switching_channel_closes_the_old_trade_at_the_gateway_first(
    shopper: Shopper, sandbox
) -> None:
    old = shopper.pay("alipay", "pc").json()
    new = shopper.pay("wechat", "pc")
    assert new.status_code == 201
    assert sandbox.trade(old["out_trade_no"])["status"] == "CLOSED"
    assert PaymentAttempt.objects.get(out_trade_no=old["out_trade_no"]).status == "closed"
    assert sandbox.pay("alipay", old["out_trade_no"]).status_code == 409
    assert PaymentAttempt.objects.filter(status__in=["created", "paying"]).count() == 1


def test_switch_when_the_old_trade_was_paid_records_it_and_answers_already_paid(
    shopper: Shopper, sandbox
) -> None:
    sandbox.set_faults(notify_drop=1)
    old = shopper.pay("alipay", "pc").json()
    assert sandbox.pay("alipay", old["out_trade_no"]).status_code == 200
    r = shopper.pay("wechat", "pc")
    assert r.status_code == 409 and r.json()["code"] == "order_already_paid"
    assert Order.objects.get(public_id=shopper.order_id).status == "paid"
    assert len(sandbox.ledger()["trades"]) == 1


def test_switch_when_the_close_fails_creates_nothing_new(shopper: Shopper, sandbox) -> None:
    old = shopper.pay("alipay", "pc").json()
    sandbox.set_faults(close_error=1)
    r = shopper.pay("wechat", "pc")
    assert r.status_code == 503 and r.json()["code"] == "payment_in_progress"
    assert PaymentAttempt.objects.count() == 1
    assert PaymentAttempt.objects.get().out_trade_no == old["out_trade_no"]
    assert len(sandbox.ledger()["trades"]) == 1


def test_closed_or_expired_orders_cannot_be_paid(shopper: Shopper, sandbox) -> None:
    Order.objects.filter(public_id=shopper.order_id).update(expires_at="2000-01-01T00:00:00Z")
    r = shopper.pay("alipay", "pc")
    assert r.status_code == 409 and r.json()["code"] == "order_closed"
    assert sandbox.ledger()["trades"] == []


def test_bad_apply_pay_input_is_400_and_foreign_orders_are_404(
    shopper: Shopper, live_server
) -> None:
    for body in (
        {"channel": "paypal", "client": "pc"},
        {"channel": "alipay", "client": "tv"},
        {},
        {"channel": 1},
    ):
        r = shopper.http.post(
            f"{live_server.url}/api/v1/orders/{shopper.order_id}/pay",
            json=body,
            headers={"Authorization": f"Bearer {shopper.token}"},
            timeout=10,
        )
        assert r.status_code == 400 and r.json()["code"] == "invalid_request"
    other = requests.post(
        f"{live_server.url}/api/v1/orders/{shopper.order_id}/pay",
        json={"channel": "alipay", "client": "pc"},
        timeout=10,
    )
    assert other.status_code == 404
    assert PaymentAttempt.objects.count() == 0


def test_a_success_after_the_order_was_cancelled_is_refunded(
    shopper: Shopper, sandbox, live_server
) -> None:
    sandbox.set_faults(ignore_close=1)
    attempt = shopper.pay("wechat", "pc").json()
    r = shopper.http.post(
        f"{live_server.url}/api/v1/orders/{shopper.order_id}/cancel",
        headers={"Authorization": f"Bearer {shopper.token}"},
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["status"] == "closed"
    assert (
        sandbox.pay("wechat", attempt["out_trade_no"]).status_code == 200
    )  # the gateway ignored the close
    refund = wait_for(lambda: Refund.objects.filter(reason="order_closed").first())
    assert refund.amount == 2599
    assert Order.objects.get(public_id=shopper.order_id).status == "closed"


def test_two_attempts_both_paid_keep_one_and_refund_the_other(shopper: Shopper, sandbox) -> None:
    sandbox.set_faults(ignore_close=1)
    first = shopper.pay("alipay", "pc").json()
    second = shopper.pay("wechat", "pc").json()
    assert sandbox.pay("wechat", second["out_trade_no"]).status_code == 200
    wait_for(lambda: shopper.view()["status"] == "paid")
    assert sandbox.pay("alipay", first["out_trade_no"]).status_code == 200
    refund = wait_for(lambda: Refund.objects.filter(reason="duplicate_payment").first())
    assert refund.attempt.out_trade_no == first["out_trade_no"]
    order = Order.objects.get(public_id=shopper.order_id)
    assert order.status == "paid" and order.paid_attempt.out_trade_no == second["out_trade_no"]
