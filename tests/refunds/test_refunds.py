"""Refunds: never over-refund, one automatic refund per cause, executed once at the gateway."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from orders.models import Order
from refunds.models import Refund
from refunds.services import refund_request
from shop.errors import ApplicationError
from shop.models import OutboxEvent
from tests.conftest import make_product
from tests.support.factories import make_order, make_paid_order
from tests.support.notifications import wechat_notify
from tests.support.shopper import Shopper, open_action, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def paid_order(channel: str = "alipay") -> Order:
    return make_paid_order(channel=channel)


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_partial_refunds_never_exceed_the_capture(round_: int, settings) -> None:
    # Held for approval so no background worker sends them: a refund the gateway rejects is
    # failed and frees its amount, which would (rightly) let a further request through.
    settings.REFUND_APPROVAL_THRESHOLD = 0
    order = paid_order()
    barrier = threading.Barrier(8)

    def ask(_: int) -> str:
        barrier.wait()
        try:
            refund_request(order_id=order.pk, amount=3000, reason="ops")
            return "ok"
        except ApplicationError as error:
            return error.code
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(ask, range(8)))
    assert results.count("ok") == 3  # 3 × 3000 ≤ 10000 < 4 × 3000
    assert results.count("refund_exceeds_capture") == 5
    assert sum(Refund.objects.values_list("amount", flat=True)) == 9000


def test_refunds_need_a_paid_order_and_a_positive_amount() -> None:
    order = make_order()
    with pytest.raises(ApplicationError) as unpaid:
        refund_request(order_id=order.pk, amount=100, reason="ops")
    assert unpaid.value.code == "order_not_paid"
    paid = paid_order()
    for amount in (0, -5):
        with pytest.raises(ApplicationError):
            refund_request(order_id=paid.pk, amount=amount, reason="ops")
    with pytest.raises(ApplicationError):
        refund_request(order_id=paid.pk, amount=10, reason="duplicate_payment")
    assert Refund.objects.count() == 0


def test_refund_notification_delivered_three_times_changes_state_once(
    live_server, settings
) -> None:
    # Held for approval, so no worker (a session-wide one may be running) sends it meanwhile:
    # the notifications alone must move it.
    settings.REFUND_APPROVAL_THRESHOLD = 0
    order = paid_order("wechat")
    refund = refund_request(order_id=order.pk, amount=10000, reason="customer_request")
    assert refund.approval_required
    attempt = order.paid_attempt
    resource = {
        "mchid": __import__("shop.credentials", fromlist=["x"]).local_credentials()["wechat"][
            "mchid"
        ],
        "transaction_id": "4200000000",
        "out_trade_no": attempt.out_trade_no,
        "refund_id": "50000000001",
        "out_refund_no": refund.out_refund_no,
        "refund_status": "SUCCESS",
        "success_time": "2026-11-22T10:00:00+08:00",
        "user_received_account": "balance",
        "amount": {"total": 10000, "refund": 10000, "payer_total": 10000, "payer_refund": 10000},
    }
    event_id = str(uuid.uuid4())
    barrier = threading.Barrier(3)

    def deliver(_: int) -> int:
        headers, body = wechat_notify(
            resource, event_id=event_id, event_type="REFUND.SUCCESS", original_type="refund"
        )
        barrier.wait()
        return requests.post(
            f"{live_server.url}/payments/notify/wechat/", data=body, headers=headers, timeout=30
        ).status_code

    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(deliver, range(3))) == [204, 204, 204]
    refund.refresh_from_db()
    assert refund.status == "succeeded"
    assert OutboxEvent.objects.filter(topic="refund.succeeded").count() == 1
    assert Order.objects.get(pk=order.pk).status == "refunded"


def test_staff_refund_api_and_approval(client: Client) -> None:
    order = paid_order()
    url = f"/api/v1/orders/{order.public_id}/refunds"
    assert client.post(url, {"amount": 100}, content_type="application/json").status_code in (
        401,
        403,
    )
    User.objects.create_user("shopper", password="pw-Shopper-123")
    client.login(username="shopper", password="pw-Shopper-123")
    assert client.post(url, {"amount": 100}, content_type="application/json").status_code == 403
    from django.contrib.auth.models import Permission

    first = User.objects.create_user("ops1", password="pw-Ops-12345", is_staff=True)
    second = User.objects.create_user("ops2", password="pw-Ops-12345", is_staff=True)
    for user in (first, second):
        user.user_permissions.add(Permission.objects.get(codename="request_refund"))
    client.login(username="ops1", password="pw-Ops-12345")
    small = client.post(
        url, {"amount": 100, "reason": "customer_request"}, content_type="application/json"
    )
    assert small.status_code == 201 and small.json()["approval_required"] is False
    too_much = client.post(url, {"amount": 10001}, content_type="application/json")
    assert too_much.status_code == 409 and too_much.json()["code"] == "refund_exceeds_capture"
    assert client.post(url, {"amount": "x"}, content_type="application/json").status_code == 400
    from django.test import override_settings

    with override_settings(REFUND_APPROVAL_THRESHOLD=500):
        big = client.post(url, {"amount": 900}, content_type="application/json")
    assert big.status_code == 201 and big.json()["approval_required"] is True
    refund = Refund.objects.get(public_id=big.json()["id"])
    from refunds.services import refund_approve

    with pytest.raises(ApplicationError):
        refund_approve(refund_id=refund.pk, approved_by=first)
    refund_approve(refund_id=refund.pk, approved_by=second)
    refund.refresh_from_db()
    assert refund.approved_by_id == second.pk


def test_admin_refund_form_records_who_and_logs_it(client: Client) -> None:
    order = paid_order()
    User.objects.create_superuser("boss", password="pw-Boss-12345")
    client.login(username="boss", password="pw-Boss-12345")
    page = client.get(f"/admin/orders/order/{order.pk}/refund/")
    assert page.status_code == 200 and b"still refundable" in page.content
    response = client.post(
        f"/admin/orders/order/{order.pk}/refund/",
        {"amount": 2500, "reason": "ops", "note": "damaged"},
    )
    assert response.status_code == 302
    refund = Refund.objects.get()
    assert (refund.amount, refund.reason, refund.note, refund.requested_by.username) == (
        2500,
        "ops",
        "damaged",
        "boss",
    )
    assert LogEntry.objects.filter(
        object_id=str(order.pk), change_message__contains=refund.out_refund_no
    ).exists()
    for url in (
        "/admin/orders/order/",
        "/admin/payments/paymentattempt/?status__exact=needs_attention",
        "/admin/payments/gatewayevent/",
        "/admin/refunds/refund/",
        "/admin/shop/outboxevent/",
        f"/admin/orders/order/{order.pk}/change/",
        "/admin/orders/order/?q=" + order.public_id,
    ):
        assert client.get(url).status_code == 200, url


def test_a_failed_refund_can_be_retried_by_ops_under_a_new_refund_number(
    client: Client, settings
) -> None:
    from refunds.services import refund_apply_result

    settings.REFUND_APPROVAL_THRESHOLD = 0  # keep any background worker from sending it
    order = paid_order()
    refund = refund_request(order_id=order.pk, amount=4000, reason="ops")
    refund_apply_result(
        out_refund_no=refund.out_refund_no, outcome="failed", error="REFUND_REJECTED"
    )
    refund.refresh_from_db()
    assert refund.status == "failed"
    old_number = refund.out_refund_no
    User.objects.create_superuser("boss", password="pw-Boss-12345")
    client.login(username="boss", password="pw-Boss-12345")
    failed_list = client.get("/admin/refunds/refund/?status__exact=failed")
    assert old_number.encode() in failed_list.content
    client.post(
        "/admin/refunds/refund/", {"action": "retry_failed", "_selected_action": [refund.pk]}
    )
    refund.refresh_from_db()
    assert refund.status == "pending" and refund.out_refund_no != old_number
    assert LogEntry.objects.filter(change_message="Retried at the gateway").exists()
    # A failed refund moved no money, so retrying never counts it twice against the capture.
    refund_request(order_id=order.pk, amount=6000, reason="ops")
    with pytest.raises(ApplicationError):
        refund_request(order_id=order.pk, amount=1, reason="ops")


# --- executed at the sandbox by the real worker ----------------------------------------------


@pytest.fixture
def shopper(stack, live_server) -> Shopper:
    make_product("TEA", price=4200, stock=20)
    s = Shopper(live_server.url)
    s.order()
    return s


@pytest.mark.parametrize("channels", [("alipay", "wechat"), ("wechat", "alipay")])
def test_duplicate_capture_is_refunded_once_and_the_ledger_nets_to_the_total(
    shopper: Shopper, sandbox, channels
) -> None:
    sandbox.set_faults(ignore_close=1)
    first = shopper.pay(channels[0], "pc").json()
    second = shopper.pay(channels[1], "wap").json()
    open_action(second["action"])
    assert sandbox.pay(channels[1], second["out_trade_no"]).status_code == 200
    wait_for(lambda: shopper.view()["status"] == "paid")
    assert sandbox.pay(channels[0], first["out_trade_no"]).status_code == 200
    refund = wait_for(lambda: Refund.objects.filter(status="succeeded").first(), timeout=30)
    assert refund.reason == "duplicate_payment"
    trades = {t["out_trade_no"]: t for t in sandbox.ledger()["trades"]}
    captured = sum(t["amount"] for t in trades.values() if t["status"] == "PAID" or t["refunded"])
    refunded = sum(t["refunded"] for t in trades.values())
    assert captured - refunded == 4200
    assert Refund.objects.count() == 1
    assert shopper.view()["refunds"][0]["status"] == "succeeded"


@pytest.mark.parametrize("channel", ["alipay", "wechat"])
def test_refund_error_is_retried_until_it_succeeds_never_twice(
    shopper: Shopper, sandbox, channel: str
) -> None:
    sandbox.set_faults(refund_error=1)
    attempt = shopper.pay(channel, "pc").json()
    sandbox.pay(channel, attempt["out_trade_no"])
    wait_for(lambda: shopper.view()["status"] == "paid")
    order = Order.objects.get(public_id=shopper.order_id)
    refund = refund_request(order_id=order.pk, amount=4200, reason="customer_request")
    wait_for(lambda: Refund.objects.get(pk=refund.pk).submissions >= 2, timeout=30)
    assert Refund.objects.get(pk=refund.pk).status == "pending"
    sandbox.set_faults(refund_error=0)
    wait_for(lambda: Refund.objects.get(pk=refund.pk).status == "succeeded", timeout=40)
    trade = sandbox.trade(attempt["out_trade_no"])
    assert trade["refunded"] == 4200
    assert len(trade["refunds"]) == 1
    assert shopper.view()["status"] == "refunded"


def test_order_status_follows_its_refunds(settings) -> None:
    from refunds.services import refund_apply_result

    settings.REFUND_APPROVAL_THRESHOLD = 0  # applied by hand below, not by a background worker
    order = paid_order()
    part = refund_request(order_id=order.pk, amount=4000, reason="customer_request")
    refund_apply_result(out_refund_no=part.out_refund_no, outcome="succeeded")
    assert Order.objects.get(pk=order.pk).status == "partially_refunded"
    rest = refund_request(order_id=order.pk, amount=6000, reason="customer_request")
    refund_apply_result(out_refund_no=rest.out_refund_no, outcome="succeeded")
    assert Order.objects.get(pk=order.pk).status == "refunded"
    assert refund_apply_result(out_refund_no=rest.out_refund_no, outcome="failed") is False
    assert Refund.objects.get(pk=rest.pk).status == "succeeded"  # final states never move
