"""Twenty shoppers' clicks on one order, across channels and clients, over real HTTP against the
sandbox — with the Redis lock on, off, and expiring mid-flight (invariant 6)."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection

from orders.models import Order
from payments.models import PaymentAttempt
from refunds.models import Refund
from tests.conftest import make_product

pytestmark = pytest.mark.django_db(transaction=True)

COMBOS = [(c, k) for c in ("alipay", "wechat") for k in ("pc", "wap", "app")]


def _open(action: dict) -> None:
    if action.get("type") == "redirect":
        requests.get(action["url"], timeout=10, allow_redirects=False)
    elif action.get("type") == "app" and "order_string" in action.get("params", {}):
        gateway = django_settings.PAYMENT_GATEWAYS["alipay"]["GATEWAY_URL"]
        requests.get(
            f"{gateway}?{action['params']['order_string']}", timeout=10, allow_redirects=False
        )


@pytest.mark.parametrize("lock", ["on", "off", "short_ttl"])
@pytest.mark.parametrize("round_", range(2))
def test_twenty_concurrent_apply_pays_leave_one_live_attempt_and_one_kept_capture(
    gateways_at_sandbox, live_server, settings, lock: str, round_: int
) -> None:
    sandbox = gateways_at_sandbox
    settings.PAYMENT_LOCK_ENABLED = lock != "off"
    if lock == "short_ttl":
        settings.PAYMENT_LOCK_TTL_SECONDS = 0.01  # expires during every gateway call
    make_product("TEA", price=1500, stock=10)
    created = requests.post(
        f"{live_server.url}/api/v1/orders/",
        json={"items": [{"sku": "TEA", "quantity": 1}], "email": "c@example.com"},
        timeout=30,
    ).json()
    auth = {"Authorization": f"Bearer {created['access_token']}"}
    rng = random.Random(f"{lock}-{round_}")
    picks = [rng.choice(COMBOS) for _ in range(20)]
    barrier = threading.Barrier(20)
    live_seen: list[int] = []

    def click(i: int) -> int:
        barrier.wait()
        channel, client = picks[i]
        try:
            r = requests.post(
                f"{live_server.url}/api/v1/orders/{created['id']}/pay",
                json={"channel": channel, "client": client},
                headers=auth,
                timeout=60,
            )
            live_seen.append(
                PaymentAttempt.objects.filter(status__in=["created", "paying"]).count()
            )
            if r.status_code in (200, 201):
                _open(r.json()["action"])
            return r.status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(click, range(20)))
    assert set(statuses) <= {200, 201, 409, 503}, statuses
    assert max(live_seen) <= 1
    assert PaymentAttempt.objects.filter(status__in=["created", "paying"]).count() <= 1

    # Now the shopper (and anyone holding an old QR) tries to pay every trade the gateway knows.
    captured = [
        t["out_trade_no"]
        for t in sandbox.ledger()["trades"]
        if sandbox.pay(t["channel"], t["out_trade_no"]).status_code == 200
    ]
    # Every capture is known locally; exactly one is kept, any other is refunded.
    for out_trade_no in captured:
        sandbox.wait_until(
            lambda otn=out_trade_no: PaymentAttempt.objects.filter(
                out_trade_no=otn, status="succeeded"
            ).exists(),
            timeout=20,
        )
    order = Order.objects.get(public_id=created["id"])
    if captured:
        assert order.status == "paid"
        kept = PaymentAttempt.objects.filter(status="succeeded").exclude(
            refunds__reason__in=["duplicate_payment", "order_closed"]
        )
        assert list(kept.values_list("pk", flat=True)) == [order.paid_attempt_id]
        assert Refund.objects.filter(reason="duplicate_payment").count() == len(captured) - 1
