"""Limits that cannot be sidestepped: the client address comes from the configured proxy
count, so a forged X-Forwarded-For resets nothing; callbacks are never rate-limited; the JSON
API does not ride on the session cookie without CSRF; idempotency keys belong to one client."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client, RequestFactory
from rest_framework.throttling import ScopedRateThrottle

from orders.models import Order
from shop.clientip import client_address
from tests.conftest import make_product
from tests.support.factories import make_attempt, make_order
from tests.support.notifications import alipay_notify_body, alipay_notify_form

pytestmark = pytest.mark.django_db(transaction=True)
JSON = "application/json"


@pytest.fixture
def low_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    # DRF binds the rates at import; the test suite lifts them, so put low ones back here.
    monkeypatch.setattr(
        ScopedRateThrottle,
        "THROTTLE_RATES",
        {"order_create": "3/min", "apply_pay": "3/min", "status": "3/min"},
    )


def _order(client: Client) -> tuple[str, str]:
    make_product("TEA", price=1999, stock=1000)
    response = client.post(
        "/api/v1/orders/",
        {"items": [{"sku": "TEA", "quantity": 1}], "email": "a@example.com"},
        content_type=JSON,
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    assert response.status_code == 201
    return response.json()["id"], response.json()["access_token"]


def test_without_trusted_proxies_x_forwarded_for_is_ignored(settings) -> None:
    settings.TRUSTED_PROXY_COUNT = 0
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert client_address(request) == "10.0.0.1"
    settings.TRUSTED_PROXY_COUNT = 1
    # Behind one proxy: the address it appended, never what the client wrote before it.
    forged = RequestFactory().get(
        "/", REMOTE_ADDR="10.0.0.254", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7"
    )
    assert client_address(forged) == "203.0.113.7"


def test_a_forged_x_forwarded_for_does_not_reset_the_rate_limit(low_limits: None) -> None:
    from django.conf import settings

    assert settings.REST_FRAMEWORK["NUM_PROXIES"] == settings.TRUSTED_PROXY_COUNT == 0
    client = Client()
    order_id, token = _order(client)
    answers = [
        client.get(
            f"/api/v1/orders/{order_id}/",
            HTTP_AUTHORIZATION=f"Bearer {token}",
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}",
        ).status_code
        for n in range(6)
    ]
    assert answers[:3] == [200, 200, 200]
    assert answers[3:] == [429, 429, 429]
    limited = client.get(f"/api/v1/orders/{order_id}/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert limited.json()["code"] == "rate_limited" and "Retry-After" in limited.headers


def test_behind_a_trusted_proxy_clients_are_told_apart_but_cannot_forge(
    low_limits: None, settings
) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    client = Client()
    order_id, token = _order(client)

    def status(forwarded: str) -> int:
        return client.get(
            f"/api/v1/orders/{order_id}/",
            HTTP_AUTHORIZATION=f"Bearer {token}",
            HTTP_X_FORWARDED_FOR=forwarded,
        ).status_code

    assert [status(f"{n}.{n}.{n}.{n}, 203.0.113.1") for n in range(4)] == [200, 200, 200, 429]
    assert status("203.0.113.2") == 200  # another real client has its own budget


def test_callbacks_are_never_rate_limited(low_limits: None) -> None:
    client = Client()
    answers = []
    for n in range(8):
        attempt = make_attempt(make_order(sku=f"CB-{n}"), channel="alipay")
        body = alipay_notify_body(alipay_notify_form(attempt.out_trade_no, attempt.amount))
        answers.append(
            client.post(
                "/payments/notify/alipay/",
                body,
                content_type="application/x-www-form-urlencoded",
                HTTP_X_FORWARDED_FOR="1.1.1.1",
            ).content
        )
    assert answers == [b"success"] * 8
    assert Order.objects.filter(status="paid").count() == 8


def test_the_api_refuses_a_session_cookie_without_csrf() -> None:
    make_product("TEA", price=1999, stock=10)
    browser = Client(enforce_csrf_checks=True)
    browser.post("/cart/add", {"sku": "TEA", "csrfmiddlewaretoken": _csrf(browser)})
    browser.get("/checkout/")
    token = browser.session["checkout_tokens"][-1]
    browser.post(
        "/checkout/",
        {"checkout_token": token, "email": "a@example.com", "csrfmiddlewaretoken": _csrf(browser)},
    )
    order = Order.objects.get()
    # Another site's form, riding on the shopper's cookie.
    for path in (
        f"/api/v1/orders/{order.public_id}/cancel",
        f"/api/v1/orders/{order.public_id}/pay",
    ):
        forged = browser.post(path, "channel=alipay&client=pc", content_type="text/plain")
        assert forged.status_code == 403, path
        assert forged.json()["code"] == "permission_denied"
    order.refresh_from_db()
    assert order.status == "unpaid" and order.attempts.count() == 0
    # The shopper's own page script sends the token: allowed.
    allowed = browser.post(
        f"/api/v1/orders/{order.public_id}/cancel",
        content_type=JSON,
        HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value,
    )
    assert allowed.status_code == 200 and allowed.json()["status"] == "closed"


def _csrf(client: Client) -> str:
    client.get("/cart/")
    if "csrftoken" not in client.cookies:
        client.get("/")
    return client.cookies["csrftoken"].value if "csrftoken" in client.cookies else ""


def test_an_idempotency_key_belongs_to_the_client_that_sent_it() -> None:
    make_product("TEA", price=1999, stock=10)
    body: dict[str, Any] = {"items": [{"sku": "TEA", "quantity": 1}], "email": "a@example.com"}
    key = "checkout-42"
    first = Client(REMOTE_ADDR="192.0.2.1").post(
        "/api/v1/orders/", body, content_type=JSON, HTTP_IDEMPOTENCY_KEY=key
    )
    replay = Client(REMOTE_ADDR="192.0.2.1").post(
        "/api/v1/orders/", body, content_type=JSON, HTTP_IDEMPOTENCY_KEY=key
    )
    other = Client(REMOTE_ADDR="192.0.2.99").post(
        "/api/v1/orders/", body, content_type=JSON, HTTP_IDEMPOTENCY_KEY=key
    )
    assert first.status_code == 201 and replay.status_code == 200
    assert replay.json()["access_token"] == first.json()["access_token"]
    assert other.json()["id"] != first.json()["id"]
    assert other.json()["access_token"] != first.json()["access_token"]
