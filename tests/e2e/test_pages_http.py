"""The shopper pages over HTTP, without a browser (these run wherever the suite runs): the
gateway return never marks anything paid by itself, every form needs its CSRF token, and the
pages carry the headers that keep them fresh and first-party."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from django.test import Client

from orders.models import Order
from payments.models import GatewayEvent, PaymentAttempt
from shop.models import Product

pytestmark = pytest.mark.django_db(transaction=True)

FIRST_PARTY_SOURCES = {"'self'", "'none'"}


@pytest.fixture
def tea(transactional_db: Any) -> Product:
    return Product.objects.create(sku="TEA", name="Jasmine green tea", price_amount=2599, stock=50)


def checkout(client: Client) -> str:
    """Cart → checkout as a shopper's browser would; returns the new order's public id."""
    assert client.post("/cart/add", {"sku": "TEA"}).status_code == 302
    token = client.get("/checkout/").context["token"]
    response = client.post("/checkout/", {"checkout_token": token, "email": "a@example.com"})
    assert response.status_code == 302, response.content[:500]
    return str(response["Location"]).rstrip("/").rsplit("/", 1)[-1]


def pay(client: Client, order_id: str, channel: str, device: str) -> PaymentAttempt:
    response = client.post(f"/orders/{order_id}/pay/submit", {"channel": channel, "client": device})
    assert response.status_code == 302 and "/pay?shown=" in response["Location"]
    return PaymentAttempt.objects.get(order__public_id=order_id, status__in=["created", "paying"])


def signed_alipay_return(sandbox: Any, attempt: PaymentAttempt) -> dict[str, str]:
    """Pay a wap trade at the sandbox and read the signed return link its cashier shows."""
    session = requests.Session()
    session.trust_env = False
    # What the shopper's browser does with the redirect action: the gateway opens the trade.
    session.get(attempt.action["url"], timeout=10, allow_redirects=False).raise_for_status()
    assert sandbox.pay("alipay", attempt.out_trade_no).status_code == 200
    page = session.get(f"{sandbox.base_url}/cashier/alipay/{attempt.out_trade_no}", timeout=10)
    match = re.search(r'id="return-link" href="([^"]+)"', page.text)
    assert match, "the sandbox cashier shows no return link"
    return dict(parse_qsl(urlsplit(html.unescape(match.group(1))).query))


def events(kind: str, out_trade_no: str) -> list[GatewayEvent]:
    return list(GatewayEvent.objects.filter(kind=kind, out_trade_no=out_trade_no))


# --- the gateway return ------------------------------------------------------------------------


def test_an_unsigned_return_claiming_success_only_asks_the_gateway(
    gateways_at_sandbox: Any, tea: Product
) -> None:
    client = Client()
    order_id = checkout(client)
    attempt = pay(client, order_id, "alipay", "pc")
    forged = {
        "out_trade_no": attempt.out_trade_no,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "25.99",
        "trade_no": "2026000000000001",
        "sign": "bm90IGEgc2lnbmF0dXJl",
    }
    response = client.get("/payments/return/alipay/", forged)
    assert response.status_code == 302 and response["Location"].endswith(f"/{order_id}/result")

    assert Order.objects.get(public_id=order_id).status == "unpaid"
    attempt.refresh_from_db()
    assert attempt.status == "paying" and attempt.paid_at is None
    [returned] = events("return", attempt.out_trade_no)
    assert returned.verified is False
    assert [e.outcome for e in events("query", attempt.out_trade_no)] == ["not_paid"]
    result = client.get(f"/orders/{order_id}/result").content.decode()
    assert "Payment received" not in result
    assert gateways_at_sandbox.trade(attempt.out_trade_no)["status"] != "PAID"


def test_a_signed_return_moved_to_another_order_marks_nothing_paid(
    gateways_at_sandbox: Any, tea: Product
) -> None:
    client = Client()
    paid_id = checkout(client)
    params = signed_alipay_return(gateways_at_sandbox, pay(client, paid_id, "alipay", "wap"))
    other_id = checkout(client)
    other = pay(client, other_id, "alipay", "pc")

    # The genuine signature over another trade number, and over a changed amount.
    for tampered in (
        {**params, "out_trade_no": other.out_trade_no},
        {**params, "out_trade_no": other.out_trade_no, "total_amount": "0.01"},
    ):
        response = client.get("/payments/return/alipay/", tampered)
        assert response.status_code == 302 and response["Location"].endswith(f"/{other_id}/result")
    assert Order.objects.get(public_id=other_id).status == "unpaid"
    assert {e.verified for e in events("return", other.out_trade_no)} == {False}
    assert {e.outcome for e in events("query", other.out_trade_no)} == {"not_paid"}
    assert gateways_at_sandbox.trade(other.out_trade_no)["status"] != "PAID"

    # The untouched return verifies; the order is paid because the gateway says so when asked.
    response = client.get("/payments/return/alipay/", params)
    assert response.status_code == 302 and response["Location"].endswith(f"/{paid_id}/result")
    assert Order.objects.get(public_id=paid_id).status == "paid"
    assert events("return", params["out_trade_no"])[0].verified is True


def test_a_wechat_return_is_never_trusted(gateways_at_sandbox: Any, tea: Product) -> None:
    client = Client()
    order_id = checkout(client)
    attempt = pay(client, order_id, "wechat", "pc")
    response = client.get(
        "/payments/return/wechat/",
        {"out_trade_no": attempt.out_trade_no, "trade_state": "SUCCESS", "amount": "2599"},
    )
    assert response.status_code == 302
    assert Order.objects.get(public_id=order_id).status == "unpaid"
    assert [e.outcome for e in events("query", attempt.out_trade_no)] == ["not_paid"]


def test_a_return_for_an_unknown_trade_or_another_shopper_is_404(
    gateways_at_sandbox: Any, tea: Product
) -> None:
    client = Client()
    order_id = checkout(client)
    attempt = pay(client, order_id, "alipay", "pc")
    stranger = Client()
    assert (
        stranger.get("/payments/return/alipay/", {"out_trade_no": attempt.out_trade_no}).status_code
        == 404
    )
    assert (
        client.get("/payments/return/alipay/", {"out_trade_no": "OPNOSUCHTRADE"}).status_code == 404
    )
    assert (
        client.get("/payments/return/paypal/", {"out_trade_no": attempt.out_trade_no}).status_code
        == 404
    )
    assert client.get("/payments/return/alipay/", {"out_trade_no": "x" * 5000}).status_code == 404
    assert Order.objects.get(public_id=order_id).status == "unpaid"
    assert events("query", attempt.out_trade_no) == []


# --- forms and headers -------------------------------------------------------------------------


def test_every_form_post_without_its_csrf_token_is_refused(
    gateways_at_sandbox: Any, tea: Product
) -> None:
    client = Client()
    order_id = checkout(client)
    pay(client, order_id, "alipay", "pc")
    client.post("/cart/add", {"sku": "TEA"})
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies
    posts = {
        "/cart/add": {"sku": "TEA"},
        "/cart/update": {"sku": "TEA", "quantity": "5"},
        "/checkout/": {"checkout_token": "x", "email": "a@example.com"},
        f"/orders/{order_id}/pay/submit": {"channel": "wechat", "client": "pc"},
        f"/orders/{order_id}/pay/check": {},
        f"/orders/{order_id}/cancel": {},
        f"/orders/{order_id}/reorder": {},
    }
    for path, data in posts.items():
        assert strict.post(path, data).status_code == 403, path
        wrong = {**data, "csrfmiddlewaretoken": "a" * 64}
        assert strict.post(path, wrong).status_code == 403, path
    order = Order.objects.get(public_id=order_id)
    assert order.status == "unpaid" and order.attempts.count() == 1
    assert Order.objects.count() == 1
    assert client.session["cart"] == {"TEA": 1}


def test_pages_are_fresh_first_party_and_not_frameable(
    gateways_at_sandbox: Any, tea: Product
) -> None:
    client = Client()
    order_id = checkout(client)
    pay(client, order_id, "wechat", "pc")
    client.post("/cart/add", {"sku": "TEA"})  # something to check out again
    pages = {
        "/": False,
        "/cart/": True,
        "/checkout/": True,
        f"/orders/{order_id}/": True,
        f"/orders/{order_id}/pay": True,
        f"/orders/{order_id}/result": True,
    }
    for path, private in pages.items():
        response = client.get(path)
        assert response.status_code == 200, path
        policy = {
            name: sources
            for name, *sources in (
                d.split() for d in response["Content-Security-Policy"].split(";")
            )
        }
        assert policy["script-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]
        assert policy["form-action"] == ["'self'"], path
        third_party = {s for sources in policy.values() for s in sources} - FIRST_PARTY_SOURCES
        assert not third_party, (path, third_party)
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        if private:
            assert "no-store" in response["Cache-Control"], path
        body = response.content.decode()
        assert '<script src="http' not in body
        scripts = re.findall(r"<script\b[^>]*>", body)
        assert scripts and all(re.search(r'src="/static/[^"]+\.js"', s) for s in scripts), scripts
        assert not re.search(r"\son[a-z]+=", body), "inline event handler"
        assert "style=" not in body, "inline style (blocked by the CSP)"
