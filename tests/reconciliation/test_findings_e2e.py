"""Every finding kind, end to end: made by sandbox faults (never by editing our rows), found in
the sandbox's real statement over HTTP, exactly once per cause, and not again on a rerun.

Polling could heal a lost callback before reconciliation looks (a session-wide Celery worker
may be running), so tests that lose callbacks also make the gateway's query fail
(``query_error=1``): only the statement tells us.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from orders.models import Order
from payments.gateways.base import Client, PrepayOutcome, PrepayRequest
from payments.gateways.registry import get_gateway
from reconciliation.models import Finding, StatementRun
from reconciliation.services import china_today, reconcile_day
from refunds.models import Refund
from refunds.services import refund_execute
from tests.reconciliation.conftest import Shop, findings
from tests.support.shopper import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
CHANNELS = ["alipay", "wechat"]


def reconcile_twice(channel: str) -> StatementRun:
    """Reconcile today; a second run must add nothing. Returns the second run."""
    first = reconcile_day(channel=channel, day=china_today())
    assert first.status == StatementRun.Status.DONE, first.error
    before = findings(first)
    second = reconcile_day(channel=channel, day=china_today())
    assert second.pk == first.pk and second.runs == first.runs + 1 and second.healed == 0
    assert findings(second) == before
    return second


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_lost_capture_is_recorded_and_the_order_paid(shop: Shop, channel: str) -> None:
    shop.sandbox.set_faults(notify_drop=1, query_error=1)
    shopper = shop.shopper()
    otn = shop.attempt(shopper, channel)
    shop.pay(channel, otn)
    assert shopper.view()["status"] == "unpaid"

    run = reconcile_day(channel=channel, day=china_today())
    assert (run.payment_lines, run.healed, run.open_findings) == (1, 1, 0)
    assert findings(run) == {("not_recorded", "healed", otn)}
    assert shopper.view()["status"] == "paid"
    assert reconcile_twice(channel).healed == 0


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_lost_duplicate_capture_is_recorded_and_refunded(shop: Shop, channel: str) -> None:
    shop.sandbox.set_faults(ignore_close=1)
    shopper = shop.shopper()
    first = shop.attempt(shopper, channel, "pc")
    second = shop.attempt(shopper, channel, "app")  # closes the first; the close is ignored
    shop.pay(channel, second)
    wait_for(lambda: shopper.view()["status"] == "paid")
    shop.sandbox.set_faults(notify_drop=1, query_error=1)
    shop.pay(channel, first)  # the shopper pays the old QR code too; nobody tells us

    run = reconcile_twice(channel)
    finding = Finding.objects.get(run=run)
    assert (finding.kind, finding.state, finding.out_trade_no) == ("not_recorded", "healed", first)
    assert "duplicate" in finding.detail
    refund = Refund.objects.get(attempt__out_trade_no=first)
    assert refund.reason == "duplicate_payment" and refund.amount == 5900
    # Its refund is pending or done, so it is not also an "extra capture without refund".
    assert not Finding.objects.filter(kind="duplicate_capture").exists()


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_lost_capture_on_a_cancelled_order_is_refunded(shop: Shop, channel: str) -> None:
    shop.sandbox.set_faults(ignore_close=1)
    shopper = shop.shopper()
    otn = shop.attempt(shopper, channel)
    assert shopper.cancel().status_code == 200
    shop.sandbox.set_faults(notify_drop=1, query_error=1)
    shop.pay(channel, otn)  # paid after we closed it: a late payment

    run = reconcile_twice(channel)
    assert findings(run) == {("not_recorded", "healed", otn)}
    assert Order.objects.get(public_id=shopper.order_id).status == "closed"
    assert Refund.objects.get(attempt__out_trade_no=otn).reason == "order_closed"


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_capture_of_a_trade_we_never_opened_is_open(shop: Shop, channel: str) -> None:
    # Another system using our merchant account opens and gets paid for a trade.
    otn = f"FOREIGN{channel[:2].upper()}0000000000001"
    gateway = get_gateway(channel)
    opened = gateway.prepay(
        PrepayRequest(
            out_trade_no=otn,
            amount=1200,
            currency="CNY",
            description="not from this shop",
            client=Client.PC,
            expires_at=timezone.now() + dt.timedelta(minutes=30),
            notify_url="https://elsewhere.example/notify",
            return_url="https://elsewhere.example/return",
        )
    )
    assert opened.outcome is PrepayOutcome.CREATED
    shop.pay(channel, otn)

    run = reconcile_twice(channel)
    assert findings(run) == {("unknown_trade", "open", otn)}
    assert Finding.objects.get(run=run).gateway_amount == 1200


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_payment_the_statement_forgot_is_open(shop: Shop, channel: str) -> None:
    shop.sandbox.set_faults(bill_omit=1)
    _, otn = shop.paid_order(channel)
    shop.sandbox.set_faults(bill_omit=0)
    shop.paid_order(channel)  # listed as usual

    run = reconcile_twice(channel)
    assert run.payment_lines == 1
    assert findings(run) == {("missing_at_gateway", "open", otn)}


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_statement_with_another_amount_is_open(shop: Shop, channel: str) -> None:
    shop.sandbox.set_faults(bill_amount_mismatch=1)
    _, otn = shop.paid_order(channel)

    run = reconcile_twice(channel)
    assert findings(run) == {("amount_mismatch", "open", otn)}
    finding = Finding.objects.get(run=run)
    assert (finding.gateway_amount, finding.local_amount) == (5901, 5900)


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_refund_the_statement_forgot_is_open(shop: Shop, channel: str) -> None:
    shopper, otn = shop.paid_order(channel)
    shop.sandbox.set_faults(bill_omit=1)
    refund = shop.refund(shopper, 1000)
    wait_for(lambda: Refund.objects.get(pk=refund.pk).status == "succeeded")

    run = reconcile_twice(channel)
    assert findings(run) == {("refund_missing_at_gateway", "open", otn)}
    assert Finding.objects.get(run=run).out_refund_no == refund.out_refund_no


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_refund_with_another_amount_is_open(shop: Shop, channel: str) -> None:
    shopper, otn = shop.paid_order(channel)
    shop.sandbox.set_faults(bill_amount_mismatch=1)
    refund = shop.refund(shopper, 1000)
    wait_for(lambda: Refund.objects.get(pk=refund.pk).status == "succeeded")

    run = reconcile_twice(channel)
    assert findings(run) == {("refund_amount_mismatch", "open", otn)}
    finding = Finding.objects.get(run=run)
    assert (finding.gateway_amount, finding.local_amount) == (1001, 1000)


def test_a_refund_whose_notification_was_lost_is_recorded(shop: Shop) -> None:
    # WeChat refunds finish a moment after they are accepted, and say so by notification only.
    shopper, otn = shop.paid_order("wechat")
    shop.sandbox.set_faults(notify_drop=1, query_error=1)
    refund = shop.refund(shopper, 2000)
    shop.sandbox.wait_until(
        lambda: shop.sandbox.trade(otn)["refunds"][0]["status"] == "SUCCESS", timeout=10
    )
    assert Refund.objects.get(pk=refund.pk).status == "pending"

    run = reconcile_day(channel="wechat", day=china_today())
    assert findings(run) == {("refund_not_recorded", "healed", otn)}
    assert Refund.objects.get(pk=refund.pk).status == "succeeded"
    assert Order.objects.get(public_id=shopper.order_id).status == "partially_refunded"
    assert reconcile_twice("wechat").healed == 0


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_duplicate_capture_whose_refund_was_refused_is_open_once(
    shop: Shop, channel: str
) -> None:
    shop.sandbox.set_faults(ignore_close=1)
    shopper = shop.shopper()
    first = shop.attempt(shopper, channel, "pc")
    second = shop.attempt(shopper, channel, "app")
    shop.pay(channel, second)
    wait_for(lambda: shopper.view()["status"] == "paid")
    shop.sandbox.set_faults(refund_reject=1)
    shop.pay(channel, first)
    refund = wait_for(lambda: Refund.objects.filter(attempt__out_trade_no=first).first())
    refund_execute(refund_id=refund.pk)  # what the worker does; the gateway refuses it
    assert Refund.objects.get(pk=refund.pk).status == "failed"

    run = reconcile_twice(channel)
    assert findings(run) == {("duplicate_capture", "open", first)}
