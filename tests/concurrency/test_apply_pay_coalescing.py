"""A hot order does not churn gateway trades: apply-pays that arrive while the order's lock is
held are coalesced to the latest choice (payments.apply_pay, "ChoiceMark"). Real threads, real
HTTP against the live server and the sandbox gateway, the real Redis lock."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import requests
from django_redis import get_redis_connection

from orders.locks import redis_key
from orders.models import Order
from payments.apply_pay import choice_key
from payments.models import PaymentAttempt
from tests.conftest import make_product

pytestmark = pytest.mark.django_db(transaction=True)

COMBOS = [(c, k) for c in ("alipay", "wechat") for k in ("pc", "wap", "app")]
LIVE = ["created", "paying"]


class Order_:
    def __init__(self, base: str) -> None:
        created = requests.post(
            f"{base}/api/v1/orders/",
            json={"items": [{"sku": "TEA", "quantity": 1}], "email": "hot@example.com"},
            timeout=30,
        ).json()
        self.base = base
        self.public_id = created["id"]
        self.auth = {"Authorization": f"Bearer {created['access_token']}"}
        self.pk = Order.objects.get(public_id=self.public_id).pk

    def pay(self, channel: str, client: str) -> requests.Response:
        return requests.post(
            f"{self.base}/api/v1/orders/{self.public_id}/pay",
            json={"channel": channel, "client": client},
            headers=self.auth,
            timeout=60,
        )


def _check_answer(response: requests.Response, channel: str, client: str) -> None:
    """Every answer is one the contract names; an attempt is always the one asked for."""
    assert response.status_code in (200, 201, 409, 503), response.text
    body = response.json()
    if response.status_code in (200, 201):
        assert (body["channel"], body["client"]) == (channel, client)
        assert body["status"] == "paying" and body["action"]
    else:
        assert body["code"] in ("payment_in_progress", "order_already_paid"), body


@pytest.mark.parametrize("round_", range(2))
def test_a_burst_of_twenty_switches_opens_a_handful_of_trades_not_one_per_click(
    gateways_at_sandbox: Any, live_server: Any, round_: int
) -> None:
    sandbox = gateways_at_sandbox
    make_product("TEA", price=1500, stock=10)
    order = Order_(live_server.url)
    assert order.pay("alipay", "pc").status_code == 201  # the live attempt the burst switches
    rng = random.Random(f"coalesce-{round_}")
    picks = [rng.choice(COMBOS) for _ in range(20)]
    barrier = threading.Barrier(len(picks))

    def click(i: int) -> requests.Response:
        barrier.wait()
        return order.pay(*picks[i])

    with ThreadPoolExecutor(len(picks)) as pool:
        answers = list(pool.map(click, range(len(picks))))
    for (channel, client), answer in zip(picks, answers, strict=True):
        _check_answer(answer, channel, client)
    attempts = PaymentAttempt.objects.filter(order_id=order.pk)
    opened = attempts.count() - 1
    # One request per click used to open a trade (closing the one before): 15 or more of 20.
    # Coalesced, a trade is opened by a holder that was the latest when it looked, and by the
    # latest of those that arrived while it worked: a few at most.
    assert opened <= 5, f"{opened} trades opened by 20 clicks: {sorted(a.status for a in attempts)}"
    # The latest choice acted: the order ends with exactly one live attempt, and it is open at
    # the gateway (the others closed there, or never opened).
    assert attempts.filter(status__in=LIVE).count() == 1
    out_trade_nos = set(attempts.values_list("out_trade_no", flat=True))
    open_at_gateway = [
        t
        for t in sandbox.ledger()["trades"]
        if t["out_trade_no"] in out_trade_nos and t["status"] == "NOTPAY"
    ]
    assert len(open_at_gateway) <= 1, open_at_gateway


def _hold_order_lock(order_pk: int) -> Any:
    lock = get_redis_connection("default").lock(redis_key("lock", "order", order_pk), timeout=30)
    assert lock.acquire(blocking=False)
    return lock


def _submit_and_wait_marked(
    pool: ThreadPoolExecutor, order: Order_, channel: str, client: str, timeout: float = 10.0
) -> Future[requests.Response]:
    """Send an apply-pay from another thread, and return once it has marked itself as the
    order's latest choice (so it is waiting for the lock, and the order of arrival is known)."""
    redis = get_redis_connection("default")
    before = redis.get(choice_key(order.pk))  # a finished request's mark stays for a while
    future = pool.submit(order.pay, channel, client)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = redis.get(choice_key(order.pk))
        if (
            value is not None
            and value != before
            and value.decode().endswith(f" {channel} {client}")
        ):
            return future
        time.sleep(0.01)
    raise AssertionError(f"the apply-pay for {channel}/{client} did not mark itself")


def test_while_the_lock_is_held_only_the_latest_choice_waits_and_acts(
    gateways_at_sandbox: Any, live_server: Any
) -> None:
    sandbox = gateways_at_sandbox
    make_product("TEA", price=1500, stock=10)
    order = Order_(live_server.url)
    live = order.pay("wechat", "pc").json()
    lock = _hold_order_lock(order.pk)  # as a long switch or a callback would hold it
    with ThreadPoolExecutor(4) as pool:
        try:
            same_as_live = _submit_and_wait_marked(pool, order, "wechat", "pc")
            other = _submit_and_wait_marked(pool, order, "alipay", "app")
            latest = _submit_and_wait_marked(pool, order, "alipay", "pc")
            double_click = _submit_and_wait_marked(pool, order, "alipay", "pc")
            # Superseded while waiting, answered at once with the lock still held: the live
            # attempt when it is on the request's own channel and client, else 503.
            reused = same_as_live.result(timeout=5)
            assert reused.status_code == 200 and reused.json()["id"] == live["id"]
            replaced = other.result(timeout=5)
            assert replaced.status_code == 503
            assert replaced.json()["code"] == "payment_in_progress"
            # The latest choice (clicked twice) is still waiting for its turn.
            time.sleep(0.3)
            assert not latest.done() and not double_click.done()
        finally:
            lock.release()
        first, second = latest.result(timeout=30), double_click.result(timeout=30)
    assert sorted([first.status_code, second.status_code]) == [200, 201]
    assert first.json()["out_trade_no"] == second.json()["out_trade_no"]
    assert first.json()["channel"] == "alipay" and first.json()["client"] == "pc"
    # Two trades in all: the one live before, closed by the switch, and the latest choice's.
    attempts = PaymentAttempt.objects.filter(order_id=order.pk)
    assert attempts.count() == 2
    assert attempts.get(out_trade_no=live["out_trade_no"]).status == "closed"
    assert sandbox.trade(live["out_trade_no"])["status"] == "CLOSED"
    assert attempts.filter(status__in=LIVE).get().out_trade_no == first.json()["out_trade_no"]


def test_without_the_lock_nobody_gives_way(
    gateways_at_sandbox: Any, live_server: Any, settings: Any
) -> None:
    """``PAYMENT_LOCK_ENABLED=0``: no mark is set, every request goes through the database's
    serialization as before (invariant 6 is proved by the contention tests)."""
    settings.PAYMENT_LOCK_ENABLED = False
    make_product("TEA", price=1500, stock=10)
    order = Order_(live_server.url)
    assert order.pay("wechat", "pc").status_code == 201
    assert order.pay("alipay", "pc").status_code == 201
    assert get_redis_connection("default").get(choice_key(order.pk)) is None
    assert PaymentAttempt.objects.filter(order_id=order.pk, status__in=LIVE).count() == 1
