"""A day of mixed traffic, healed by the system itself (real Celery worker and beat), reconciles
with no findings at all: on each channel, against that channel's statement only."""

from __future__ import annotations

from typing import Any

import pytest

from orders.models import Order
from reconciliation.models import Finding, StatementRun
from reconciliation.services import china_today, reconcile_day
from refunds.models import Refund, RefundReason
from refunds.services import refund_request
from tests.reconciliation.conftest import Shop
from tests.support.shopper import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def busy_shop(stack: Any, live_server: Any, sandbox: Any) -> Shop:
    return Shop(live_server.url, sandbox)


def _quiet(sandbox: Any) -> bool:
    """Every refund final here, every capture at the gateway known here."""
    if Refund.objects.exclude(status="succeeded").exists():
        return False
    trades = sandbox.ledger()["trades"]
    paid_there = {t["out_trade_no"] for t in trades if t["status"] == "PAID"}
    known = set(
        Order.objects.filter(attempts__status="succeeded").values_list(
            "attempts__out_trade_no", flat=True
        )
    )
    return paid_there <= known


def test_a_normal_day_on_both_channels_has_no_findings(busy_shop: Shop) -> None:
    shop, sandbox = busy_shop, busy_shop.sandbox
    expected = {"alipay": {"payments": 0, "refunds": 0}, "wechat": {"payments": 0, "refunds": 0}}

    for channel in ("alipay", "wechat"):
        # Plain payments, one of them partly refunded by staff.
        shop.paid_order(channel)
        shopper, _ = shop.paid_order(channel)
        order = Order.objects.get(public_id=shopper.order_id)
        refund_request(order_id=order.pk, amount=900, reason=RefundReason.OPS)
        expected[channel]["payments"] += 2
        expected[channel]["refunds"] += 1

        # A lost callback, healed by polling.
        sandbox.set_faults(notify_drop=1)
        shopper = shop.shopper()
        shop.pay(channel, shop.attempt(shopper, channel))
        wait_for(lambda shopper=shopper: shopper.view()["status"] == "paid", timeout=30)
        sandbox.set_faults(notify_drop=0)
        expected[channel]["payments"] += 1

        # A late payment (after the order was cancelled, the close ignored), refunded.
        sandbox.set_faults(ignore_close=1)
        shopper = shop.shopper()
        late = shop.attempt(shopper, channel)
        assert shopper.cancel().status_code == 200
        shop.pay(channel, late)
        sandbox.set_faults(ignore_close=0)
        wait_for(lambda late=late: Refund.objects.filter(attempt__out_trade_no=late).exists())
        expected[channel]["payments"] += 1
        expected[channel]["refunds"] += 1

    # A duplicate across channels: the old Alipay QR is paid after WeChat paid the order.
    sandbox.set_faults(ignore_close=1)
    shopper = shop.shopper()
    old = shop.attempt(shopper, "alipay")
    new = shop.attempt(shopper, "wechat")
    shop.pay("wechat", new)
    wait_for(lambda: shopper.view()["status"] == "paid")
    shop.pay("alipay", old)
    sandbox.set_faults(ignore_close=0)
    wait_for(lambda: Refund.objects.filter(attempt__out_trade_no=old).exists())
    expected["wechat"]["payments"] += 1
    expected["alipay"]["payments"] += 1
    expected["alipay"]["refunds"] += 1

    wait_for(lambda: _quiet(sandbox), timeout=60)
    assert Refund.objects.filter(reason="duplicate_payment").count() == 1
    assert Refund.objects.filter(reason="order_closed").count() == 2

    for channel in ("alipay", "wechat"):
        run = reconcile_day(channel=channel, day=china_today())
        assert run.status == StatementRun.Status.DONE, run.error
        assert (run.payment_lines, run.refund_lines) == (
            expected[channel]["payments"],
            expected[channel]["refunds"],
        )
        assert list(Finding.objects.filter(run=run).values_list("kind", "out_trade_no")) == []
        again = reconcile_day(channel=channel, day=china_today())
        assert again.open_findings == 0 and not Finding.objects.filter(run=again).exists()
