"""Real threads, real commits: the live server handles each request in its own thread and
database connection, exactly like production workers."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from orders.models import IdempotencyKey, Order
from shop.models import Product
from tests.conftest import make_product

pytestmark = pytest.mark.django_db(transaction=True)


def _burst(n: int, call):  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n)

    def run(i: int):  # type: ignore[no-untyped-def]
        barrier.wait()
        return call(i)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


@pytest.mark.parametrize("round_", range(3))
def test_twenty_shoppers_for_the_last_five_units(live_server, round_: int) -> None:
    make_product("LAST5", stock=5)

    def order(i: int) -> int:
        return requests.post(
            f"{live_server.url}/api/v1/orders/",
            json={"items": [{"sku": "LAST5", "quantity": 1}], "email": f"s{i}@example.com"},
            timeout=30,
        ).status_code

    statuses = Counter(_burst(20, order))
    assert statuses == {201: 5, 409: 15}
    assert Order.objects.count() == 5
    assert Product.objects.get(sku="LAST5").stock == 0


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_identical_requests_with_one_key_make_one_order(
    live_server, round_: int
) -> None:
    make_product("TEA", stock=100)
    key = str(uuid.uuid4())

    def order(i: int):  # type: ignore[no-untyped-def]
        r = requests.post(
            f"{live_server.url}/api/v1/orders/",
            json={"items": [{"sku": "TEA", "quantity": 2}], "email": "same@example.com"},
            headers={"Idempotency-Key": key},
            timeout=30,
        )
        return r.status_code, r.json().get("id")

    results = _burst(10, order)
    ids = {order_id for status, order_id in results if status in (200, 201)}
    assert len(ids) == 1
    assert all(status in (200, 201, 409) for status, _ in results)
    assert sum(1 for status, _ in results if status == 201) == 1
    assert Order.objects.count() == 1
    assert IdempotencyKey.objects.count() == 1
    assert Product.objects.get(sku="TEA").stock == 98


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_identical_requests_without_key_make_one_order(live_server, round_: int) -> None:
    make_product("TEA", stock=100)

    def order(i: int):  # type: ignore[no-untyped-def]
        r = requests.post(
            f"{live_server.url}/api/v1/orders/",
            json={"items": [{"sku": "TEA", "quantity": 1}], "email": f"dup{round_}@example.com"},
            timeout=30,
        )
        return r.status_code, r.json().get("id")

    results = _burst(8, order)
    ids = {order_id for status, order_id in results if status in (200, 201)}
    assert len(ids) == 1
    assert Order.objects.count() == 1
    assert Product.objects.get(sku="TEA").stock == 99


def test_checkout_form_double_submit_lands_on_the_same_order(live_server) -> None:
    make_product("TEA", stock=10)
    browser = requests.Session()
    home = browser.get(f"{live_server.url}/")
    csrf = browser.cookies.get("csrftoken") or ""
    if not csrf:
        import re

        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', home.text).group(1)  # type: ignore[union-attr]
    browser.post(
        f"{live_server.url}/cart/add",
        data={"sku": "TEA", "csrfmiddlewaretoken": csrf},
        headers={"Referer": live_server.url},
    )
    page = browser.get(f"{live_server.url}/checkout/").text
    import re

    token = re.search(r'name="checkout_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    form = {"checkout_token": token, "email": "form@example.com", "csrfmiddlewaretoken": csrf}

    def submit(i: int) -> str:
        r = browser.post(
            f"{live_server.url}/checkout/",
            data=form,
            headers={"Referer": live_server.url},
            allow_redirects=False,
        )
        return r.headers.get("Location", "")

    locations = _burst(4, submit) + [submit(99)]
    orders = Order.objects.all()
    assert orders.count() == 1
    assert {loc for loc in locations} == {f"/orders/{orders[0].public_id}/"}
    assert Product.objects.get(sku="TEA").stock == 9
