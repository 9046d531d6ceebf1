from __future__ import annotations

import re

import pytest
from django.core.cache import cache
from django.test import Client

from orders.models import Order
from payments.decision import attempt_apply_trade_status, paid_cache_key
from payments.gateways.base import TradeOutcome, TradeStatus
from tests.support.factories import make_attempt

pytestmark = pytest.mark.django_db(transaction=True)


def _checkout(client: Client) -> Order:
    client.post("/cart/add", {"sku": "TEA-1"})
    page = client.get("/checkout/").content.decode()
    token = re.search(r'name="checkout_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = client.post("/checkout/", {"checkout_token": token, "email": "page@example.com"})
    assert response.status_code == 302
    return Order.objects.get()


def test_only_the_ordering_session_sees_the_order_page(client: Client, product) -> None:
    order = _checkout(client)
    assert client.get(f"/orders/{order.public_id}/").status_code == 200
    stranger = Client()
    assert stranger.get(f"/orders/{order.public_id}/").status_code == 404
    assert stranger.get(f"/orders/{order.public_id}/pay").status_code == 404
    assert stranger.get(f"/orders/{order.public_id}/status").status_code == 404
    assert stranger.post(f"/orders/{order.public_id}/cancel").status_code in (403, 404)
    assert stranger.get(f"/api/v1/orders/{order.public_id}/").status_code == 404
    assert Order.objects.get(pk=order.pk).status == "unpaid"


def test_checkout_with_a_bad_email_or_stale_token_creates_nothing(client: Client, product) -> None:
    client.post("/cart/add", {"sku": "TEA-1"})
    page = client.get("/checkout/").content.decode()
    token = re.search(r'name="checkout_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert client.post("/checkout/", {"checkout_token": token, "email": "nope"}).status_code == 400
    assert (
        client.post(
            "/checkout/", {"checkout_token": "forged", "email": "a@example.com"}
        ).status_code
        == 302
    )
    assert Order.objects.count() == 0


def test_paid_result_cache_is_written_only_after_the_commit(product) -> None:
    from tests.support.factories import make_order

    order = make_order()
    attempt = make_attempt(order)
    assert cache.get(paid_cache_key(order.public_id)) is None
    attempt_apply_trade_status(
        attempt_id=attempt.pk,
        status=TradeStatus(
            outcome=TradeOutcome.PAID, out_trade_no=attempt.out_trade_no, amount=attempt.amount
        ),
        source="test",
    )
    assert cache.get(paid_cache_key(order.public_id)) == "paid"
    assert Order.objects.get(pk=order.pk).status == "paid"
