"""Gateway callbacks over real HTTP: verified, stored, idempotent, never a 500, nothing changed
by anything forged, stale, replayed, malformed or for someone else."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
import requests

from orders.locks import redis_key
from orders.models import Order
from payments.models import GatewayEvent, PaymentAttempt, StateChange
from refunds.models import Refund
from shop.models import OutboxEvent
from tests.support.factories import make_attempt, make_order
from tests.support.notifications import (
    alipay_notify_body,
    alipay_notify_form,
    wechat_notify,
    wechat_transaction,
)

pytestmark = pytest.mark.django_db(transaction=True)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def alipay_post(base: str, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(
        f"{base}/payments/notify/alipay/", data=body, headers=headers or FORM, timeout=30
    )


def wechat_post(base: str, headers: dict[str, str], body: bytes) -> requests.Response:
    return requests.post(f"{base}/payments/notify/wechat/", data=body, headers=headers, timeout=30)


def assert_nothing_changed(attempt: PaymentAttempt) -> None:
    fresh = PaymentAttempt.objects.get(pk=attempt.pk)
    assert fresh.status == attempt.status and fresh.version == attempt.version
    assert Order.objects.get(pk=attempt.order_id).status == "unpaid"
    assert OutboxEvent.objects.filter(topic="order.paid").count() == 0


def test_alipay_success_answers_exactly_success_and_pays(live_server) -> None:
    attempt = make_attempt(make_order(), channel="alipay")
    r = alipay_post(
        live_server.url,
        alipay_notify_body(alipay_notify_form(attempt.out_trade_no, attempt.amount)),
    )
    assert (r.status_code, r.text) == (200, "success")
    assert Order.objects.get(pk=attempt.order_id).status == "paid"
    event = GatewayEvent.objects.get(kind="notification")
    assert event.verified and event.processed_at and event.attempt_id == attempt.pk
    assert "sign=" in event.body  # stored raw
    # The audit trail names the notification that caused each transition, by its event id.
    changes = StateChange.objects.filter(
        order_id=attempt.order_id, to_status__in=["succeeded", "paid"]
    )
    assert {c.cause for c in changes} == {f"notification:{event.event_id}"}
    assert {(c.entity, c.to_status) for c in changes} == {
        ("attempt", "succeeded"),
        ("order", "paid"),
    }


def test_wechat_success_answers_204_and_pays(live_server) -> None:
    attempt = make_attempt(make_order(), channel="wechat")
    headers, body = wechat_notify(wechat_transaction(attempt.out_trade_no, attempt.amount))
    r = wechat_post(live_server.url, headers, body)
    assert r.status_code == 204
    assert Order.objects.get(pk=attempt.order_id).status == "paid"


def test_redelivery_is_acknowledged_and_changes_nothing(live_server) -> None:
    attempt = make_attempt(make_order(), channel="wechat")
    headers, body = wechat_notify(
        wechat_transaction(attempt.out_trade_no, attempt.amount), event_id="EV-1"
    )
    assert wechat_post(live_server.url, headers, body).status_code == 204
    version = PaymentAttempt.objects.get(pk=attempt.pk).version
    for _ in range(3):  # WeChat re-sends with a fresh timestamp and signature, same event id
        headers, body = wechat_notify(
            wechat_transaction(attempt.out_trade_no, attempt.amount), event_id="EV-1"
        )
        assert wechat_post(live_server.url, headers, body).status_code == 204
    assert PaymentAttempt.objects.get(pk=attempt.pk).version == version
    event = GatewayEvent.objects.get(kind="notification")
    assert event.deliveries == 4
    assert OutboxEvent.objects.filter(topic="order.paid").count() == 1


@pytest.mark.parametrize("lock_enabled", [True, False])
@pytest.mark.parametrize("round_", range(3))
def test_ten_concurrent_copies_of_one_callback_make_one_transition(
    live_server, settings, lock_enabled: bool, round_: int
) -> None:
    settings.PAYMENT_LOCK_ENABLED = lock_enabled
    attempt = make_attempt(make_order(), channel="alipay")
    body = alipay_notify_body(
        alipay_notify_form(attempt.out_trade_no, attempt.amount, notify_id=f"N{round_}")
    )
    barrier = threading.Barrier(10)

    def deliver(_: int) -> tuple[int, str]:
        barrier.wait()
        r = alipay_post(live_server.url, body)
        return r.status_code, r.text

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(deliver, range(10)))
    assert all(status == 200 and text in ("success", "fail") for status, text in answers)
    assert "success" in [t for _, t in answers]
    attempt_after = PaymentAttempt.objects.get(pk=attempt.pk)
    assert attempt_after.status == "succeeded" and attempt_after.version == attempt.version + 1
    assert OutboxEvent.objects.filter(topic="order.paid").count() == 1
    assert GatewayEvent.objects.filter(kind="notification").count() == 1


def test_success_for_a_second_attempt_records_a_duplicate_refund(live_server) -> None:
    order = make_order()
    first = make_attempt(order, channel="alipay", status="closed")
    second = make_attempt(order, channel="wechat")
    assert (
        alipay_post(
            live_server.url,
            alipay_notify_body(alipay_notify_form(first.out_trade_no, first.amount)),
        ).text
        == "success"
    )
    headers, body = wechat_notify(wechat_transaction(second.out_trade_no, second.amount))
    assert wechat_post(live_server.url, headers, body).status_code == 204
    refund = Refund.objects.get()
    assert (refund.reason, refund.attempt_id, refund.amount) == (
        "duplicate_payment",
        second.pk,
        second.amount,
    )
    assert Order.objects.get(pk=order.pk).paid_attempt_id == first.pk


def test_lock_not_acquired_in_time_answers_failure_so_the_gateway_retries(
    live_server, settings
) -> None:
    from django_redis import get_redis_connection

    settings.PAYMENT_LOCK_WAIT_SECONDS = 0.2
    attempt = make_attempt(make_order(), channel="alipay")
    held = get_redis_connection("default").lock(
        redis_key("lock", "order", attempt.order_id), timeout=30
    )
    assert held.acquire()
    try:
        body = alipay_notify_body(
            alipay_notify_form(attempt.out_trade_no, attempt.amount, notify_id="BUSY")
        )
        r = alipay_post(live_server.url, body)
        assert r.text == "fail"
        assert Order.objects.get(pk=attempt.order_id).status == "unpaid"
    finally:
        held.release()
    assert alipay_post(live_server.url, body).text == "success"  # the retry goes through
    assert Order.objects.get(pk=attempt.order_id).status == "paid"


def _tampered_alipay(attempt: PaymentAttempt) -> dict[str, bytes]:
    good = alipay_notify_form(attempt.out_trade_no, attempt.amount)
    forged = dict(good, total_amount="0.01")
    unsigned = {k: v for k, v in good.items() if k not in ("sign", "sign_type")}
    wrong_app = alipay_notify_form(attempt.out_trade_no, attempt.amount, app_id="2021000000000000")
    wrong_seller = alipay_notify_form(
        attempt.out_trade_no, attempt.amount, seller_id="2088999999999999"
    )
    unknown = alipay_notify_form("OPUNKNOWN00000000000000000", attempt.amount)
    reserialised = dict(good, subject=good["subject"] + " ")
    return {
        "forged amount": alipay_notify_body(forged),
        "unsigned": alipay_notify_body(unsigned),
        "bad signature": alipay_notify_body(dict(good, sign="AAAA" + good["sign"][4:])),
        "garbage signature": alipay_notify_body(dict(good, sign="!!not base64!!")),
        "re-serialised": alipay_notify_body(reserialised),
        "wrong app id": alipay_notify_body(wrong_app),
        "wrong seller": alipay_notify_body(wrong_seller),
        "unknown trade": alipay_notify_body(unknown),
        "empty": b"",
        "not a form": b"\xff\xfe\x00garbage",
        "json instead": b'{"trade_status": "TRADE_SUCCESS"}',
        "huge": urlencode(dict(good, body="x" * 70000)).encode(),
    }


def test_bad_alipay_notifications_get_fail_and_change_nothing(live_server) -> None:
    attempt = make_attempt(make_order(), channel="alipay")
    for name, body in _tampered_alipay(attempt).items():
        r = alipay_post(live_server.url, body)
        assert r.status_code < 500, name
        assert r.text != "success", name
        assert_nothing_changed(attempt)
    r = requests.get(f"{live_server.url}/payments/notify/alipay/", timeout=10)
    assert r.status_code == 405
    assert GatewayEvent.objects.filter(verified=True, processed_at__isnull=False).count() == 0


def test_signed_notifications_with_another_amount_are_refused_and_set_aside_for_ops(
    live_server,
) -> None:
    """One integrity policy: an answer carrying another amount or currency pays nothing, is
    refused, and puts the attempt in front of a person with the reason stored."""
    cases = {}
    ali = make_attempt(make_order(), channel="alipay")
    cases["alipay amount"] = (
        ali,
        lambda: alipay_post(
            live_server.url,
            alipay_notify_body(alipay_notify_form(ali.out_trade_no, ali.amount + 1)),
        ),
    )
    for name, amount in {"wechat amount": {"total": 2000, "currency": "CNY"}}.items():
        wx = make_attempt(make_order(), channel="wechat")
        txn = dict(wechat_transaction(wx.out_trade_no, wx.amount), amount=amount)
        cases[name] = (wx, lambda txn=txn: wechat_post(live_server.url, *wechat_notify(txn)))
    wx2 = make_attempt(make_order(), channel="wechat")
    txn2 = dict(
        wechat_transaction(wx2.out_trade_no, wx2.amount),
        amount={"total": wx2.amount, "currency": "USD"},
    )
    cases["wechat currency"] = (wx2, lambda: wechat_post(live_server.url, *wechat_notify(txn2)))
    for name, (attempt, post) in cases.items():
        r = post()
        assert r.status_code < 500 and r.text != "success", name
        if attempt.channel == "wechat":
            assert 400 <= r.status_code < 500 and r.json()["code"] == "FAIL", name
        fresh = PaymentAttempt.objects.get(pk=attempt.pk)
        assert (fresh.status, fresh.attention_reason) == ("needs_attention", "amount_mismatch")
        assert Order.objects.get(pk=attempt.order_id).status == "unpaid", name
        assert GatewayEvent.objects.filter(
            out_trade_no=attempt.out_trade_no, rejection="amount_mismatch"
        ).exists()
    assert OutboxEvent.objects.filter(topic="order.paid").count() == 0
    assert Refund.objects.count() == 0


def test_bad_wechat_notifications_get_4xx_fail_and_change_nothing(live_server) -> None:
    attempt = make_attempt(make_order(), channel="wechat")
    txn = wechat_transaction(attempt.out_trade_no, attempt.amount)
    headers, body = wechat_notify(txn)
    cases: dict[str, tuple[dict[str, str], bytes]] = {}
    cases["stale timestamp"] = wechat_notify(txn, timestamp=int(time.time()) - 600)
    cases["future timestamp"] = wechat_notify(txn, timestamp=int(time.time()) + 600)
    cases["signature probe"] = wechat_notify(txn, signature_prefix="WECHATPAY/SIGNTEST/")
    cases["re-serialised body"] = (headers, body.replace(b'", "', b'","'))
    cases["no signature"] = ({k: v for k, v in headers.items() if k != "Wechatpay-Signature"}, body)
    cases["wrong serial"] = (dict(headers, **{"Wechatpay-Serial": "PUB_KEY_ID_OTHER"}), body)
    cases["other merchant"] = wechat_notify(dict(txn, mchid="1900000000"))
    cases["unknown trade"] = wechat_notify(dict(txn, out_trade_no="OPUNKNOWN000000000000000"))
    cases["malformed json"] = (headers, b"{not json")
    cases["huge"] = (headers, b"{" + b" " * 70000 + b"}")
    for name, (h, b) in cases.items():
        r = wechat_post(live_server.url, h, b)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        assert r.json()["code"] == "FAIL", name
        assert_nothing_changed(attempt)
    assert GatewayEvent.objects.filter(verified=False).count() >= len(cases) - 1
