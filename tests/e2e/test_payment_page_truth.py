"""The payment page tells the truth (over HTTP, against the sandbox): an open, unpaid QR stays
on the page as "waiting" past the whole poll schedule; "confirming — don't pay again" only when
we do not know (the gateway timed out, or the shopper just came back from it)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from orders.models import Order
from payments.models import PaymentAttempt
from payments.polling import attempt_poll
from shop.models import Product
from tests.e2e.test_pages_http import checkout, pay
from tests.support.shopper import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CONFIRMING = "We are confirming your payment"
WAITING = "Waiting for your payment"


@pytest.fixture
def tea(transactional_db: Any) -> Product:
    return Product.objects.create(sku="TEA", name="Jasmine green tea", price_amount=2599, stock=50)


def page(client: Client, order_id: str) -> str:
    response = client.get(f"/orders/{order_id}/pay")
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("channel", ["alipay", "wechat"])
def test_an_unpaid_qr_past_the_schedule_stays_payable_and_the_page_waits(
    gateways_at_sandbox: Any, tea: Any, channel: str
) -> None:
    client = Client()
    order_id = checkout(client)
    attempt = pay(client, order_id, channel, "pc")
    for _ in range(len(settings.PAYMENT_POLL_SCHEDULE) + 2):
        attempt_poll(attempt_id=attempt.pk, only_if_due=False)
    attempt.refresh_from_db()
    assert (attempt.status, attempt.attention_reason) == ("paying", "")
    assert attempt.poll_step > len(settings.PAYMENT_POLL_SCHEDULE)
    assert attempt.next_poll_at is not None
    assert attempt.next_poll_at <= Order.objects.get(public_id=order_id).expires_at
    html = page(client, order_id)
    assert 'class="qr-code"' in html and WAITING in html and CONFIRMING not in html
    # and it is still payable: the shopper scans it now
    assert gateways_at_sandbox.pay(channel, attempt.out_trade_no).status_code == 200
    wait_for(lambda: Order.objects.get(public_id=order_id).status == "paid", timeout=20)


def test_confirming_when_the_gateway_times_out_and_waiting_again_when_it_answers(
    gateways_at_sandbox: Any, tea: Any
) -> None:
    client = Client()
    order_id = checkout(client)
    attempt = pay(client, order_id, "wechat", "pc")
    assert CONFIRMING not in page(client, order_id)
    gateways_at_sandbox.set_faults(query_error=1)
    attempt_poll(attempt_id=attempt.pk, only_if_due=False)
    assert CONFIRMING in page(client, order_id)
    gateways_at_sandbox.set_faults(query_error=0)
    attempt_poll(attempt_id=attempt.pk, only_if_due=False)
    html = page(client, order_id)
    assert CONFIRMING not in html and 'class="qr-code"' in html
    assert PaymentAttempt.objects.get(pk=attempt.pk).status == "paying"


def test_back_from_the_gateway_unconfirmed_is_confirming(
    gateways_at_sandbox: Any, tea: Any
) -> None:
    client = Client()
    order_id = checkout(client)
    attempt = pay(client, order_id, "wechat", "wap")
    response = client.get("/payments/return/wechat/", {"out_trade_no": attempt.out_trade_no})
    assert response.status_code == 302
    result = client.get(response["Location"]).content.decode()
    assert "confirming your payment" in result.lower()
    # another shopper's browser, never back from the gateway, is not told so
    assert Order.objects.get(public_id=order_id).status == "unpaid"
