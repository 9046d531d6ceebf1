"""The shopper's checkout in a real browser: product list to receipt, through the sandbox
gateway's cashier page, with the pages keeping themselves true (seed 000 pull and push, seed 002
check before showing a payment page)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from playwright.sync_api import expect

from orders.models import Order
from payments.models import PaymentAttempt
from tests.e2e.conftest import Shopper

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHANNEL_NAMES = {"alipay": "Alipay", "wechat": "WeChat Pay"}


def heading(page: Any) -> Any:
    return page.get_by_role("heading", level=1)


@pytest.mark.parametrize("channel", ["alipay", "wechat"])
def test_happy_path_the_page_flips_to_paid_by_itself(shopper: Shopper, channel: str) -> None:
    order_id = shopper.buy(screenshots=channel == "alipay")
    page = shopper.page
    page.get_by_role("link", name="Pay now").click()
    page.wait_for_url(f"**/orders/{order_id}/pay")
    expect(heading(page)).to_have_text("Pay for your order")
    expect(page.get_by_text("Have you already completed payment?")).to_have_count(0)
    if channel == "alipay":
        shopper.shot("05-pay-choose")

    shopper.pay_with(channel, "pc")
    # The QR code is drawn inline, in this page; nothing opened another window.
    assert len(shopper.context.pages) == 1
    expect(page.locator("figure.qr svg[role=img]")).to_be_visible()
    expect(page.get_by_text("Have you already completed payment?")).to_have_count(0)
    expect(page.locator("#order-status")).to_contain_text("Waiting for your payment")
    shopper.shot(f"06-pay-qr-{channel}")

    shopper.pay_at_cashier(shopper.code_url(), screenshot=f"07-cashier-{channel}")
    # Nobody touches the shop page: it learns of the payment and moves to the receipt.
    page.wait_for_url(f"**/orders/{order_id}/result")
    expect(heading(page)).to_have_text("Payment received")
    expect(page.locator(".facts")).to_contain_text(CHANNEL_NAMES[channel])
    shopper.shot(f"08-result-paid-{channel}")

    order = Order.objects.get(public_id=order_id)
    assert order.status == "paid"
    # Within a second of the order becoming paid, the page had started loading the receipt.
    navigated_at = page.evaluate("performance.timeOrigin") / 1000
    lag = navigated_at - order.updated_at.timestamp()
    assert lag < 1.0, f"the page moved on {lag:.2f} s after the order was paid"
    assert len(shopper.sandbox.ledger()["trades"]) == 1
