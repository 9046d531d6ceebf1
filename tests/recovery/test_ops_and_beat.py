"""Ops actions against the live sandbox, and two beat schedulers running at once."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from orders.models import Order
from payments.models import PaymentAttempt
from payments.polling import poll_sweep
from shop.models import OutboxEvent
from tests.conftest import make_product
from tests.support.shopper import Shopper, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ops(client: Client) -> Client:
    User.objects.create_superuser("ops", password="pw-Ops-12345")
    client.login(username="ops", password="pw-Ops-12345")
    return client


def test_admin_query_now_and_close_at_gateway_are_logged(
    gateways_at_sandbox, live_server, ops: Client
) -> None:
    sandbox = gateways_at_sandbox
    sandbox.set_faults(notify_drop=1)
    make_product("TEA", price=800, stock=5)
    first, second = Shopper(live_server.url), Shopper(live_server.url)
    first.order()
    second.order()
    paid = first.pay("alipay", "pc").json()
    open_one = second.pay("wechat", "pc").json()
    sandbox.pay("alipay", paid["out_trade_no"])
    paid_attempt = PaymentAttempt.objects.get(out_trade_no=paid["out_trade_no"])
    open_attempt = PaymentAttempt.objects.get(out_trade_no=open_one["out_trade_no"])

    r = ops.post(
        "/admin/payments/paymentattempt/",
        {"action": "query_gateway_now", "_selected_action": [paid_attempt.pk]},
    )
    assert r.status_code == 302
    assert Order.objects.get(public_id=first.order_id).status == "paid"
    r = ops.post(
        "/admin/payments/paymentattempt/",
        {"action": "close_at_gateway", "_selected_action": [open_attempt.pk]},
    )
    assert r.status_code == 302
    assert PaymentAttempt.objects.get(pk=open_attempt.pk).status == "closed"
    assert sandbox.trade(open_one["out_trade_no"])["status"] == "CLOSED"
    messages = list(LogEntry.objects.values_list("change_message", flat=True))
    assert any("Queried gateway" in m for m in messages)
    assert any("Closed at gateway" in m for m in messages)
    page = ops.get(f"/admin/payments/paymentattempt/{paid_attempt.pk}/change/")
    assert page.status_code == 200 and b"Query result" in page.content


def test_sweeps_run_twice_at_once_do_no_double_work(gateways_at_sandbox, live_server) -> None:
    """Two beat schedulers fire the same sweep; SKIP LOCKED claims split the work."""
    import threading

    from django.db import connection

    sandbox = gateways_at_sandbox
    sandbox.set_faults(notify_drop=1)
    make_product("TEA", price=800, stock=50)
    shoppers = []
    for _ in range(8):
        s = Shopper(live_server.url)
        s.order()
        attempt = s.pay("wechat", "pc").json()
        sandbox.pay("wechat", attempt["out_trade_no"])
        shoppers.append(s)
    PaymentAttempt.objects.update(next_poll_at=timezone.now())
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def sweep() -> None:
        barrier.wait()
        try:
            counts.append(poll_sweep(limit=100))
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 8  # each attempt claimed by exactly one sweep
    assert Order.objects.filter(status="paid").count() == 8
    assert OutboxEvent.objects.filter(topic="order.paid").count() == 8


def test_a_second_beat_process_causes_no_double_effect(stack, live_server, sandbox) -> None:
    from tests.support.stack import CeleryProcesses

    extra = CeleryProcesses(env=stack.env)
    extra.start_beat()
    try:
        sandbox.set_faults(notify_drop=1)
        make_product("TEA", price=800, stock=50)
        shoppers = [Shopper(live_server.url) for _ in range(4)]
        for s in shoppers:
            s.order()
            a = s.pay("alipay", "pc").json()
            sandbox.pay("alipay", a["out_trade_no"])
        for s in shoppers:
            wait_for(lambda s=s: s.view()["status"] == "paid", timeout=30)
        Order.objects.filter(status="unpaid").update(expires_at=timezone.now())
        wait_for(
            lambda: OutboxEvent.objects.filter(topic="order.paid", status="delivered").count() == 4,
            timeout=30,
        )
    finally:
        extra.stop()
    assert OutboxEvent.objects.filter(topic="order.paid").count() == 4
    assert OutboxEvent.objects.filter(topic="order.closed").count() == 0
