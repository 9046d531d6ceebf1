"""No 500 for any input: every case of issue 13 and of testing.md's bad-input list gets a clear
4xx (or the gateway's failure answer) and changes nothing; JSON endpoints answer
``{"code", "detail"}``. The test client re-raises any exception a view lets escape, so a case
that would have been a 500 fails here loudly."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from django.test import Client

from orders.models import Order
from payments.models import PaymentAttempt
from refunds.models import Refund
from shop.models import Product
from tests.conftest import make_product
from tests.payments.test_callbacks import _tampered_alipay
from tests.support.factories import make_attempt, make_order
from tests.support.notifications import wechat_notify, wechat_transaction

pytestmark = pytest.mark.django_db(transaction=True)

NESTED_LIST = "[" * 30000
NESTED_OBJECT = '{"a":' * 12000  # deeper than the recursion limit, under 64 KiB
JSON = "application/json"


def assert_error_shape(response: Any, status: int | tuple[int, ...] | None = None) -> None:
    statuses = (status,) if isinstance(status, int) else status
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.content[:300])
    body = response.json()
    assert isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body


@pytest.fixture
def tea(transactional_db: Any) -> Product:
    return make_product("TEA", price=1999, stock=50)


@pytest.fixture
def api_order(tea: Product) -> tuple[str, str]:
    response = Client().post(
        "/api/v1/orders/",
        {"items": [{"sku": "TEA", "quantity": 1}], "email": "owner@example.com"},
        content_type=JSON,
    )
    assert response.status_code == 201
    return response.json()["id"], response.json()["access_token"]


def _nothing_changed(orders: int = 1) -> None:
    assert Order.objects.count() == orders
    assert PaymentAttempt.objects.count() == 0
    assert Refund.objects.count() == 0
    assert Product.objects.get(sku="TEA").stock == 50 - orders


# --- JSON API ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [NESTED_LIST, NESTED_OBJECT], ids=["list", "object"])
def test_deeply_nested_json_is_a_400_not_a_recursion_error(api_order, body: str) -> None:
    order_id, token = api_order
    client = Client()
    assert_error_shape(client.post("/api/v1/orders/", body, content_type=JSON), 400)
    assert_error_shape(
        client.post(
            f"/api/v1/orders/{order_id}/pay",
            body,
            content_type=JSON,
            HTTP_AUTHORIZATION=f"Bearer {token}",
        ),
        400,
    )
    _nothing_changed()


def _order_body(**overrides: Any) -> dict[str, Any]:
    return {"items": [{"sku": "TEA", "quantity": 1}], "email": "a@example.com", **overrides}


API_BAD_ORDERS: dict[str, Any] = {
    "unknown sku": _order_body(items=[{"sku": "NOPE", "quantity": 1}]),
    "quantity 0": _order_body(items=[{"sku": "TEA", "quantity": 0}]),
    "negative quantity": _order_body(items=[{"sku": "TEA", "quantity": -3}]),
    "huge quantity": _order_body(items=[{"sku": "TEA", "quantity": 10**30}]),
    "missing items": {"email": "a@example.com"},
    "missing email": {"items": [{"sku": "TEA", "quantity": 1}]},
    "empty items": _order_body(items=[]),
    "NUL in sku": _order_body(items=[{"sku": "TE\u0000A", "quantity": 1}]),
    "NUL in email": _order_body(email="a\u0000@example.com"),
    "email of 255": _order_body(email="a" * 243 + "@example.com"),
    "email of 320": _order_body(email="a" * 64 + "@" + ("b" * 63 + ".") * 3 + "b" * 63),
}


@pytest.mark.parametrize("case", list(API_BAD_ORDERS))
def test_bad_order_bodies_are_refused_with_the_error_shape(tea: Product, case: str) -> None:
    response = Client().post("/api/v1/orders/", API_BAD_ORDERS[case], content_type=JSON)
    assert_error_shape(response, 400)
    assert Order.objects.count() == 0


def test_malformed_json_wrong_type_and_bad_idempotency_keys(tea: Product) -> None:
    client = Client()
    assert_error_shape(client.post("/api/v1/orders/", "{nope", content_type=JSON), 400)
    assert_error_shape(client.post("/api/v1/orders/", "a=b", content_type="text/plain"), 415)
    for key in ("", "   ", "k" * 256):
        response = client.post(
            "/api/v1/orders/", _order_body(), content_type=JSON, HTTP_IDEMPOTENCY_KEY=key
        )
        assert_error_shape(response, 400)
    first = client.post(
        "/api/v1/orders/", _order_body(), content_type=JSON, HTTP_IDEMPOTENCY_KEY="key-1"
    )
    assert first.status_code == 201
    reused = client.post(
        "/api/v1/orders/",
        _order_body(items=[{"sku": "TEA", "quantity": 2}]),
        content_type=JSON,
        HTTP_IDEMPOTENCY_KEY="key-1",
    )
    assert_error_shape(reused, 422)
    assert Order.objects.count() == 1


ORDER_ID_CASES = {
    "NUL": "%00",
    "NUL inside": "ord_%00abc",
    "sequential": "1",
    "malformed": "ord_..%2F..%2Fetc",
    "another shopper's": "ord_AAAAAAAAAAAAAAAAAAAAAAAAAA",
}


@pytest.mark.parametrize("case", list(ORDER_ID_CASES))
def test_every_api_order_url_refuses_bad_ids_with_the_error_shape(api_order, case: str) -> None:
    _, token = api_order
    bad = ORDER_ID_CASES[case]
    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert_error_shape(client.get(f"/api/v1/orders/{bad}/", **auth), (400, 404))
    for action in ("pay", "cancel", "refunds"):
        response = client.post(
            f"/api/v1/orders/{bad}/{action}",
            {"channel": "alipay", "client": "pc"},
            content_type=JSON,
            **auth,
        )
        assert_error_shape(response, (400, 401, 403, 404))
    _nothing_changed()


def test_another_shoppers_order_and_unknown_channels(api_order) -> None:
    order_id, token = api_order
    client = Client()
    assert_error_shape(client.get(f"/api/v1/orders/{order_id}/"), 404)
    assert_error_shape(
        client.get(f"/api/v1/orders/{order_id}/", HTTP_AUTHORIZATION="Bearer not-the-token"), 404
    )
    for body in ({"channel": "paypal", "client": "pc"}, {"channel": "alipay", "client": "tv"}, {}):
        response = client.post(
            f"/api/v1/orders/{order_id}/pay",
            body,
            content_type=JSON,
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert_error_shape(response, 400)
    _nothing_changed()


# --- pages -------------------------------------------------------------------------------------

PAGE_GETS = ["/", "/pay", "/result", "/status", "/events"]
PAGE_POSTS = ["/cancel", "/reorder", "/pay/submit", "/pay/check"]


@pytest.mark.parametrize("bad", ["%00", "ord_%00x", "1", "ord_NOSUCHORDER"])
def test_every_order_page_refuses_bad_ids(api_order, bad: str) -> None:
    client = Client()
    for suffix in PAGE_GETS:
        path = f"/orders/{bad}{suffix}" if suffix != "/" else f"/orders/{bad}/"
        response = client.get(path)
        assert response.status_code in (400, 404), (path, response.status_code)
        if suffix in ("/status", "/events"):
            assert_error_shape(response)
    for suffix in PAGE_POSTS:
        response = client.post(f"/orders/{bad}{suffix}", {"channel": "alipay", "client": "pc"})
        assert response.status_code in (400, 404), (suffix, response.status_code)
    _nothing_changed()


@pytest.mark.parametrize("channel", ["alipay", "wechat"])
def test_a_nul_in_a_return_address_is_a_400(channel: str, transactional_db: Any) -> None:
    client = Client()
    for query in ("out_trade_no=%00", "out_trade_no=OP%00X&sign=%00", "%00=1"):
        response = client.get(f"/payments/return/{channel}/?{query}")
        assert response.status_code == 400, (query, response.status_code)


def test_a_nul_in_a_cart_form_is_a_400_and_the_cart_stays_empty(tea: Product) -> None:
    client = Client()
    assert client.post("/cart/add", {"sku": "TE\x00A"}).status_code == 400
    assert client.post("/cart/update", {"sku": "TEA\x00", "quantity": "1"}).status_code == 400
    assert client.post("/cart/add", {"sku\x00": "TEA"}).status_code == 400
    assert "cart" not in client.session or not client.session["cart"]


def _checkout_client() -> tuple[Client, str]:
    client = Client()
    assert client.post("/cart/add", {"sku": "TEA"}).status_code == 302
    assert client.get("/checkout/").status_code == 200
    return client, client.session["checkout_tokens"][-1]


@pytest.mark.parametrize("length", [255, 256, 300, 320])
def test_a_checkout_email_over_254_characters_is_refused(tea: Product, length: int) -> None:
    client, token = _checkout_client()
    local = "a" * 64
    domain = ".".join(["b" * 60] * 5)[: length - len(local) - 1 - 4] + ".com"
    email = f"{local}@{domain}"
    assert len(email) == length
    response = client.post("/checkout/", {"checkout_token": token, "email": email})
    assert response.status_code == 400
    assert b"valid e-mail" in response.content
    assert Order.objects.count() == 0


def test_checkout_without_or_with_a_reused_token_makes_no_second_order(tea: Product) -> None:
    client, token = _checkout_client()
    missing = client.post("/checkout/", {"email": "a@example.com"})
    assert missing.status_code == 302 and Order.objects.count() == 0
    first = client.post("/checkout/", {"checkout_token": token, "email": "a@example.com"})
    assert first.status_code == 302 and Order.objects.count() == 1
    again = client.post("/checkout/", {"checkout_token": token, "email": "a@example.com"})
    assert again.status_code == 302 and Order.objects.count() == 1


def test_a_tampered_return_marks_nothing_paid(transactional_db: Any) -> None:
    attempt = make_attempt(make_order(), channel="alipay")
    response = Client().get(
        "/payments/return/alipay/",
        {
            "out_trade_no": attempt.out_trade_no,
            "trade_status": "TRADE_SUCCESS",
            "total_amount": "0.01",
            "sign": "forged",
        },
    )
    assert response.status_code < 500
    assert Order.objects.get(pk=attempt.order_id).status == "unpaid"


# --- callbacks: the gateway's own failure answer, nothing changed ------------------------------


def test_bad_callbacks_get_the_gateways_failure_answer(transactional_db: Any) -> None:
    client = Client()
    alipay = make_attempt(make_order(sku="A1"), channel="alipay")
    for name, body in _tampered_alipay(alipay).items():
        response = client.post(
            "/payments/notify/alipay/", body, content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code == 200 and response.content == b"fail", name
    wrong_type = client.post("/payments/notify/alipay/", "{}", content_type=JSON)
    assert wrong_type.content == b"fail"
    wechat = make_attempt(make_order(sku="W1"), channel="wechat")
    txn = wechat_transaction(wechat.out_trade_no, wechat.amount)
    headers, body = wechat_notify(txn)
    replay_headers, replay_body = wechat_notify(txn, timestamp=int(time.time()) - 600)
    cases = {
        "malformed json": (headers, b"{not json"),
        "wrong content type": ({**headers, "Content-Type": "text/plain"}, body),
        "no signature": ({k: v for k, v in headers.items() if k != "Wechatpay-Signature"}, body),
        "stale": (replay_headers, replay_body),
        "probe": wechat_notify(txn, signature_prefix="WECHATPAY/SIGNTEST/"),
        "NUL": (headers, b'{"id": "\x00"}'),
        "huge": (headers, b"{" + b" " * 70000 + b"}"),
    }
    for name, (h, b) in cases.items():
        meta = {
            "HTTP_" + k.upper().replace("-", "_"): v for k, v in h.items() if k != "Content-Type"
        }
        response = client.post(
            "/payments/notify/wechat/",
            b,
            content_type=h.get("Content-Type", JSON),
            **meta,
        )
        assert 400 <= response.status_code < 500, name
        assert response.json()["code"] == "FAIL", name
    for attempt in (alipay, wechat):
        attempt.refresh_from_db()
        assert attempt.status == "paying"
    assert Order.objects.filter(status="paid").count() == 0


# --- over real HTTP: oversized bodies ----------------------------------------------------------


def test_oversized_bodies_get_413_json_and_connection_close(shop_server, tea: Product) -> None:
    base = shop_server.url
    big = json.dumps(_order_body(note="x" * (70 * 1024)))
    session = requests.Session()
    response = session.post(
        f"{base}/api/v1/orders/", data=big, headers={"Content-Type": JSON}, timeout=30
    )
    assert response.status_code == 413
    assert response.headers.get("Connection", "").lower() == "close"
    assert_error_shape(response, 413)
    form = session.post(f"{base}/cart/add", data={"sku": "x" * (70 * 1024)}, timeout=30)
    assert form.status_code == 413
    assert form.headers.get("Connection", "").lower() == "close"
    # The next request on the same client works: the server closed, the client reconnected.
    assert session.get(f"{base}/api/v1/products/", timeout=30).status_code == 200
    callback = session.post(
        f"{base}/payments/notify/alipay/",
        data=b"a=" + b"x" * (70 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert callback.status_code == 200 and callback.text == "fail"
    assert session.get(f"{base}/api/v1/products/", timeout=30).status_code == 200
    assert Order.objects.count() == 0
