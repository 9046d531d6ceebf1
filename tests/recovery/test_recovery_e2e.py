"""Drop-off recovery with a real Celery worker and beat (not eager) against the sandbox."""

from __future__ import annotations

import datetime as dt
import signal

import pytest
from django.utils import timezone

from orders.models import Order
from payments.models import GatewayEvent, PaymentAttempt
from refunds.models import Refund
from shop.models import OutboxEvent, Product
from tests.conftest import make_product
from tests.support.shopper import Shopper, open_action, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shopper(stack, live_server) -> Shopper:
    make_product("TEA", price=3300, stock=20)
    s = Shopper(live_server.url)
    s.order()
    return s


@pytest.mark.parametrize("channel", ["alipay", "wechat"])
def test_lost_callbacks_are_recovered_by_polling(shopper: Shopper, sandbox, channel: str) -> None:
    sandbox.set_faults(notify_drop=1)
    attempt = shopper.pay(channel, "pc").json()
    assert sandbox.pay(channel, attempt["out_trade_no"]).status_code == 200
    # Poll schedule under test is 1,2,3,5,8 s: well within 20 s.
    wait_for(lambda: shopper.view()["status"] == "paid", timeout=20)
    assert not GatewayEvent.objects.filter(kind="notification").exists()
    assert GatewayEvent.objects.filter(kind="query", outcome="paid").exists()


def test_prepay_timeout_trade_is_found_and_the_order_ends_paid(shopper: Shopper, sandbox) -> None:
    sandbox.set_faults(prepay_timeout=1, hang_seconds=3, notify_drop=1)
    r = shopper.pay("wechat", "pc")
    assert r.status_code == 503 and r.json()["code"] == "payment_in_progress"
    attempt = PaymentAttempt.objects.get()
    # Recorded before the call; a poll may already have found the trade and moved it to paying.
    assert attempt.status in ("created", "paying")
    trade = sandbox.trade(attempt.out_trade_no)
    assert trade is not None
    sandbox.set_faults(prepay_timeout=0)
    assert sandbox.pay("wechat", attempt.out_trade_no).status_code == 200
    wait_for(lambda: shopper.view()["status"] == "paid", timeout=20)


def test_prepay_timeout_trade_left_unpaid_is_closed_with_the_order(
    shopper: Shopper, sandbox
) -> None:
    sandbox.set_faults(prepay_timeout=1, hang_seconds=3)
    shopper.pay("alipay", "pc")
    attempt = PaymentAttempt.objects.get()
    sandbox.set_faults(prepay_timeout=0)
    Order.objects.filter(public_id=shopper.order_id).update(expires_at=timezone.now())
    wait_for(lambda: shopper.view()["status"] == "closed", timeout=20)
    assert PaymentAttempt.objects.get(pk=attempt.pk).status == "closed"
    assert sandbox.trade(attempt.out_trade_no)["status"] == "CLOSED"
    assert Product.objects.get(sku="TEA").stock == 20


def test_expiry_closes_at_the_gateway_first_and_waits_when_it_cannot(
    shopper: Shopper, sandbox
) -> None:
    attempt = shopper.pay("wechat", "pc").json()
    sandbox.set_faults(close_error=1)
    Order.objects.filter(public_id=shopper.order_id).update(expires_at=timezone.now())
    # Several sweeps run; none may close the order blind while the trade is still payable.
    wait_for(
        lambda: GatewayEvent.objects.filter(kind="close", outcome="unknown").count() >= 2,
        timeout=20,
    )
    assert Order.objects.get(public_id=shopper.order_id).status == "unpaid"
    assert Product.objects.get(sku="TEA").stock == 19
    sandbox.set_faults(close_error=0)
    wait_for(lambda: shopper.view()["status"] == "closed", timeout=20)
    assert sandbox.trade(attempt["out_trade_no"])["status"] == "CLOSED"
    assert Product.objects.get(sku="TEA").stock == 20


def test_expiry_finds_a_payment_the_callback_never_told_us(shopper: Shopper, sandbox) -> None:
    sandbox.set_faults(notify_drop=1)
    attempt = shopper.pay("alipay", "pc").json()
    # Stop polling from finding it first: push the next poll far away.
    PaymentAttempt.objects.filter(out_trade_no=attempt["out_trade_no"]).update(
        next_poll_at=timezone.now() + dt.timedelta(hours=1)
    )
    assert sandbox.pay("alipay", attempt["out_trade_no"]).status_code == 200
    Order.objects.filter(public_id=shopper.order_id).update(expires_at=timezone.now())
    wait_for(lambda: shopper.view()["status"] != "unpaid", timeout=20)
    view = shopper.view()
    # Paid at the gateway before the deadline: the order is paid, never closed, nothing refunded.
    assert view["status"] == "paid"
    assert view["refunds"] == []


def test_payment_after_expiry_is_refunded_automatically(
    shopper: Shopper, sandbox, settings
) -> None:
    settings.LATE_PAYMENT_GRACE_SECONDS = 0  # beyond the grace: refund, don't revive
    sandbox.set_faults(ignore_time_expire=1, ignore_close=1, notify_drop=0)
    attempt = shopper.pay("wechat", "wap").json()
    open_action(attempt["action"])
    Order.objects.filter(public_id=shopper.order_id).update(
        expires_at=timezone.now() - dt.timedelta(seconds=5)
    )
    wait_for(lambda: shopper.view()["status"] == "closed", timeout=20)
    assert (
        sandbox.pay("wechat", attempt["out_trade_no"]).status_code == 200
    )  # the gateway let it through
    refund = wait_for(
        lambda: Refund.objects.filter(reason="order_closed", status="succeeded").first(), timeout=30
    )
    assert refund.amount == 3300
    trade = sandbox.trade(attempt["out_trade_no"])
    assert trade["refunded"] == trade["amount"] == 3300
    assert shopper.view()["status"] == "closed"


def test_worker_killed_mid_sweep_loses_nothing_and_does_nothing_twice(
    stack, shopper: Shopper, sandbox, live_server
) -> None:
    sandbox.set_faults(notify_drop=1, query_timeout=0.5, hang_seconds=2)
    shoppers = [shopper] + [Shopper(live_server.url) for _ in range(5)]
    trades = []
    for s in shoppers:
        if not s.order_id:
            s.order()
        a = s.pay("alipay" if len(trades) % 2 else "wechat", "pc").json()
        trades.append(a["out_trade_no"])
        assert sandbox.pay(a["channel"], a["out_trade_no"]).status_code == 200
    # Let the sweep start querying (slowly: half the queries hang), then kill the worker hard.
    wait_for(lambda: GatewayEvent.objects.filter(kind="query").exists(), timeout=20)
    stack.kill_worker(signal.SIGKILL)
    stack.start_worker()
    sandbox.set_faults(query_timeout=0)
    for s in shoppers:
        wait_for(lambda s=s: s.view()["status"] == "paid", timeout=60)
    assert OutboxEvent.objects.filter(topic="order.paid").count() == len(shoppers)
    assert Refund.objects.count() == 0
    for otn in trades:
        assert sandbox.trade(otn)["refunded"] == 0


def test_outbox_events_are_delivered_with_a_stable_id(shopper: Shopper, sandbox) -> None:
    attempt = shopper.pay("alipay", "pc").json()
    sandbox.pay("alipay", attempt["out_trade_no"])
    event = wait_for(
        lambda: OutboxEvent.objects.filter(topic="order.paid", status="delivered").first(),
        timeout=20,
    )
    assert event.payload["order_id"] == shopper.order_id
    assert event.deliveries >= 1


def test_payment_just_after_expiry_within_grace_revives_the_order(
    shopper: Shopper, sandbox
) -> None:
    sandbox.set_faults(ignore_time_expire=1, ignore_close=1)
    attempt = shopper.pay("alipay", "pc").json()
    Order.objects.filter(public_id=shopper.order_id).update(
        expires_at=timezone.now() - dt.timedelta(seconds=5)
    )
    wait_for(lambda: shopper.view()["status"] == "closed", timeout=20)
    assert Product.objects.get(sku="TEA").stock == 20
    assert sandbox.pay("alipay", attempt["out_trade_no"]).status_code == 200
    wait_for(lambda: shopper.view()["status"] == "paid", timeout=20)
    assert Product.objects.get(sku="TEA").stock == 19  # stock taken again
    assert Refund.objects.count() == 0


def test_past_the_last_poll_step_an_attempt_needs_attention_and_still_heals(
    shopper: Shopper, sandbox
) -> None:
    sandbox.set_faults(notify_drop=1, query_error=1)
    attempt = shopper.pay("wechat", "pc").json()
    # Schedule under test: 1,2,3,5,8 s. Every query fails, so the gateway stays silent.
    row = wait_for(
        lambda: PaymentAttempt.objects.filter(
            out_trade_no=attempt["out_trade_no"], status="needs_attention"
        ).first(),
        timeout=30,
    )
    assert "silent" in row.last_error
    assert PaymentAttempt.objects.filter(status__in=["created", "paying"]).count() == 0
    # The gateway recovers and the shopper had paid: the next poll heals it without anyone acting.
    sandbox.set_faults(query_error=0)
    assert sandbox.pay("wechat", attempt["out_trade_no"]).status_code == 200
    wait_for(lambda: shopper.view()["status"] == "paid", timeout=30)
    assert PaymentAttempt.objects.get(out_trade_no=attempt["out_trade_no"]).status == "succeeded"


def test_a_needs_attention_attempt_is_closed_at_the_gateway_before_a_new_one(
    shopper: Shopper, sandbox
) -> None:
    first = shopper.pay("alipay", "pc").json()
    PaymentAttempt.objects.filter(out_trade_no=first["out_trade_no"]).update(
        status="needs_attention"
    )
    second = shopper.pay("alipay", "pc")
    assert second.status_code == 201
    assert second.json()["out_trade_no"] != first["out_trade_no"]
    assert sandbox.trade(first["out_trade_no"])["status"] == "CLOSED"
    assert PaymentAttempt.objects.get(out_trade_no=first["out_trade_no"]).status == "closed"
