"""The shopper's checkout in a real browser: product list to receipt, through the sandbox
gateway's cashier page, with the pages keeping themselves true (seed 000 pull and push, seed 002
check before showing a payment page)."""

from __future__ import annotations

import datetime as dt
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
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
    page.wait_for_url(re.compile(rf"/orders/{order_id}/pay(\?shown=[^&]+)?$"))
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
    # The receipt was loaded after the order became paid, not before (speed is a benchmark's).
    assert page.evaluate("performance.timeOrigin") / 1000 >= order.paid_at.timestamp() - 1
    assert len(shopper.sandbox.ledger()["trades"]) == 1


def attempts(order_id: str) -> list[PaymentAttempt]:
    return list(PaymentAttempt.objects.filter(order__public_id=order_id).order_by("created_at"))


def test_alipay_wap_pays_in_this_window_and_comes_back_through_the_return(
    shopper: Shopper,
) -> None:
    order_id = shopper.buy()
    page = shopper.page
    page.goto(shopper.url(f"/orders/{order_id}/pay"))
    shopper.choose("alipay", "wap")
    page.locator("#pay-button").click()
    # The same window goes to the gateway (no pop-up), which shows its cashier.
    page.wait_for_url("**/cashier/alipay/**")
    assert len(shopper.context.pages) == 1
    page.get_by_role("button", name=re.compile(r"^Pay")).click()
    page.locator("#return-link").click()
    page.wait_for_url(f"**/orders/{order_id}/result")
    expect(heading(page)).to_have_text("Payment received")
    assert Order.objects.get(public_id=order_id).status == "paid"
    assert len(shopper.sandbox.ledger()["trades"]) == 1


def test_back_from_the_gateway_asks_have_you_already_paid(shopper: Shopper) -> None:
    order_id = shopper.buy()
    page = shopper.page
    page.goto(shopper.url(f"/orders/{order_id}/pay"))
    shopper.choose("wechat", "wap")
    page.locator("#pay-button").click()
    page.wait_for_url("**/cashier/wechat/**")

    # The shopper comes back without saying whether they paid: ask, don't show a blind form.
    page.go_back()
    page.wait_for_url(re.compile(rf"/orders/{order_id}/pay(\?shown=[^&]+)?$"))
    ask = page.locator("section.ask")
    expect(ask.get_by_role("heading")).to_have_text("Have you already completed payment?")
    expect(ask.get_by_role("button", name="Check now")).to_be_visible()
    expect(ask.get_by_role("link", name="Pay another way")).to_be_visible()
    expect(page.locator("#ask-title")).to_be_focused()
    # Coming back does not send the window to the gateway again.
    expect(page.locator("a[data-autoforward]")).to_have_count(0)
    expect(page.get_by_role("link", name="Continue to WeChat Pay")).to_be_visible()
    shopper.shot("09-pay-ask-already-paid")

    ask.get_by_role("button", name="Check now").click()
    expect(page.locator(".messages")).to_contain_text("We have not received your payment yet")
    expect(page.locator("section.ask")).to_have_count(0)

    # They go back to WeChat, pay, and WeChat sends them back to the shop's return page.
    page.get_by_role("link", name="Continue to WeChat Pay").click()
    page.wait_for_url("**/cashier/wechat/**")
    page.get_by_role("button", name=re.compile(r"^Pay")).click()
    page.locator("#return-link").click()
    page.wait_for_url(f"**/orders/{order_id}/result")
    expect(heading(page)).to_have_text("Payment received")
    assert len(attempts(order_id)) == 1
    assert len(shopper.sandbox.ledger()["trades"]) == 1


def test_double_clicking_pay_opens_one_attempt(shopper: Shopper) -> None:
    order_id = shopper.buy()
    page = shopper.page
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(shopper.url(f"/orders/{order_id}/pay"))
    shopper.choose("wechat", "pc")
    page.locator("#pay-button").dblclick()
    page.locator("figure.qr svg").wait_for()
    assert [url for url in posts if url.endswith("/pay/submit")] == [
        shopper.url(f"/orders/{order_id}/pay/submit")
    ]
    assert len(attempts(order_id)) == 1
    assert len(shopper.sandbox.ledger()["trades"]) == 1


def test_two_pay_requests_at_once_open_one_attempt(shopper: Shopper) -> None:
    """The server holds without the button's help: the same form sent twice at the same
    instant, with the browser's own session, opens one attempt and one trade."""
    order_id = shopper.buy()
    page = shopper.page
    page.goto(shopper.url(f"/orders/{order_id}/pay"))
    shopper.choose("alipay", "pc")
    form = page.locator("form.pay-form")
    action = shopper.url(str(form.get_attribute("action")))
    fields = page.evaluate(
        "() => Array.from(new FormData(document.querySelector('form.pay-form')).entries())"
    )
    cookies = {c["name"]: c["value"] for c in shopper.context.cookies()}
    # Sent from two threads rather than from the page: the open page keeps itself true and
    # reloads when the order changes, which would cut a script running in it short.
    start = threading.Barrier(2)

    def send() -> int:
        with requests.Session() as session:
            session.cookies.update(cookies)
            start.wait(timeout=10)
            answer = session.post(
                action, data=fields, headers={"Referer": action}, allow_redirects=False, timeout=30
            )
            return answer.status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = list(pool.map(lambda _: send(), range(2)))
    assert statuses == [302, 302]
    assert len(attempts(order_id)) == 1
    assert len(shopper.sandbox.ledger()["trades"]) == 1
    page.goto(shopper.url(f"/orders/{order_id}/pay"))
    expect(page.locator("section.attempt[data-channel=alipay] figure.qr svg")).to_be_visible()


def test_back_button_after_paying_shows_the_result_and_opens_nothing(shopper: Shopper) -> None:
    order_id = shopper.buy()
    page = shopper.page
    page.goto(shopper.url(f"/orders/{order_id}/pay"))
    shopper.pay_with("alipay", "pc")
    shopper.pay_at_cashier(shopper.code_url()).close()
    page.wait_for_url(f"**/orders/{order_id}/result")

    page.go_back()  # to the payment page with the QR code: it must not show it again
    page.wait_for_url(f"**/orders/{order_id}/result")
    expect(heading(page)).to_have_text("Payment received")
    expect(page.locator("figure.qr")).to_have_count(0)
    shopper.shot("10-back-after-paying")

    page.go_back()  # the payment page before paying: paid now, so the receipt again
    page.wait_for_url(f"**/orders/{order_id}/result")
    page.goto(shopper.url(f"/orders/{order_id}/"))
    expect(page.locator("#order-status")).to_have_text("Payment received.")
    expect(page.get_by_role("link", name="Pay now")).to_have_count(0)
    assert len(attempts(order_id)) == 1
    assert len(shopper.sandbox.ledger()["trades"]) == 1


def test_two_tabs_two_channels_keep_one_payment_and_refund_the_other(
    stack: Any, shopper: Shopper
) -> None:
    # The gateway acknowledges the close but leaves the old QR code payable.
    shopper.sandbox.set_faults(ignore_close=1)
    order_id = shopper.buy()
    tab_a = shopper.page
    tab_a.goto(shopper.url(f"/orders/{order_id}/pay"))
    shopper.pay_with("alipay", "pc")
    alipay_code = shopper.code_url()

    tab_b = shopper.context.new_page()
    tab_b.goto(shopper.url(f"/orders/{order_id}/pay"))
    expect(tab_b.get_by_text("Have you already completed payment?")).to_be_visible()
    tab_b.get_by_role("link", name="Pay another way").click()
    shopper.pay_with("wechat", "pc", page=tab_b)
    wechat_code = shopper.code_url(tab_b)
    # Tab A sees that its QR code is no longer the live one and asks before showing anything.
    expect(tab_a.locator("section.attempt[data-channel=wechat]")).to_be_visible()
    expect(tab_a.get_by_text("Have you already completed payment?")).to_be_visible()

    shopper.pay_at_cashier(wechat_code).close()
    tab_b.wait_for_url(f"**/orders/{order_id}/result")
    shopper.pay_at_cashier(alipay_code).close()  # the old QR code, paid from another phone

    # The second capture is refunded by the worker; the page says so without a reload.
    refunds = tab_b.locator("li.refund[data-reason=duplicate_payment]")
    expect(refunds.locator(".pill")).to_have_text("Refunded", timeout=30_000)
    expect(tab_b.locator(".refund-summary")).to_contain_text("We kept one payment")
    expect(tab_b.locator(".refund-summary")).to_contain_text("WeChat Pay")
    expect(refunds).to_contain_text("Alipay payment of ¥25.99")
    shopper.shot("11-result-duplicate-refunded", tab_b)

    order = Order.objects.get(public_id=order_id)
    assert order.status == "paid" and order.paid_attempt.channel == "wechat"
    refund = order.refunds.get()
    assert (refund.reason, refund.status, refund.attempt.channel) == (
        "duplicate_payment",
        "succeeded",
        "alipay",
    )
    trades = {t["channel"]: t for t in shopper.sandbox.ledger()["trades"]}
    assert set(trades) == {"alipay", "wechat"}


def test_order_expiring_while_the_page_is_open_says_closed(shopper: Shopper) -> None:
    order_id = shopper.buy()
    page = shopper.page
    page.goto(shopper.url(f"/orders/{order_id}/pay"))
    shopper.pay_with("alipay", "pc")
    Order.objects.filter(public_id=order_id).update(
        expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    )
    # No reload by hand: the page notices and shows the closed order.
    expect(page.get_by_role("heading", name="This order is closed")).to_be_visible()
    expect(page.locator("#order-status")).to_have_text(
        "This order is closed and can no longer be paid."
    )
    expect(page.locator("figure.qr")).to_have_count(0)
    expect(page.locator("form.pay-form")).to_have_count(0)
    shopper.shot("12-pay-expired")
    page.get_by_role("button", name="Order again").click()
    page.wait_for_url("**/cart/")
    expect(page.locator("table.lines tbody")).to_contain_text("Jasmine green tea")


def test_cancelled_order_is_closed_and_offers_to_order_again(shopper: Shopper) -> None:
    order_id = shopper.buy()
    page = shopper.page
    page.get_by_role("button", name="Cancel order").click()
    page.wait_for_url(f"**/orders/{order_id}/")
    expect(page.get_by_role("heading", name="This order is closed")).to_be_visible()
    expect(page.get_by_text("You cancelled this order.")).to_be_visible()
    expect(page.get_by_role("link", name="Pay now")).to_have_count(0)
    shopper.shot("13-order-cancelled")

    page.goto(shopper.url(f"/orders/{order_id}/pay"))
    expect(page.get_by_role("heading", name="This order is closed")).to_be_visible()
    expect(page.locator("form.pay-form")).to_have_count(0)
    shopper.shot("14-pay-cancelled")
    page.get_by_role("button", name="Order again").click()
    page.wait_for_url("**/cart/")
    expect(page.locator("table.lines tbody")).to_contain_text("Jasmine green tea")
    assert Order.objects.get(public_id=order_id).status == "closed"
    assert shopper.sandbox.ledger()["trades"] == []


def test_an_unknown_outcome_says_confirming_and_never_failed(shopper: Shopper) -> None:
    order_id = shopper.buy()
    page = shopper.page
    page.goto(shopper.url(f"/orders/{order_id}/pay"))
    shopper.pay_with("alipay", "pc")

    # Switching needs the old trade closed first; the gateway cannot confirm the close (503).
    shopper.sandbox.set_faults(close_error=1)
    shopper.choose("wechat", "pc")
    page.locator("#pay-button").click()
    expect(page.locator(".messages")).to_contain_text(
        "We are confirming your payment — please don't pay again."
    )
    assert "fail" not in page.inner_text("body").lower()
    assert [a.channel for a in attempts(order_id)] == ["alipay"]
    shopper.shot("15-pay-in-progress")

    # Polling gave up on the trade: nobody knows how it ended.
    PaymentAttempt.objects.filter(order__public_id=order_id).update(status="needs_attention")
    expect(page.get_by_role("heading", name="We are confirming your payment")).to_be_visible()
    expect(page.locator("#order-status")).to_have_text(
        "We are confirming your payment — please don't pay again."
    )
    expect(page.locator("form.pay-form")).not_to_be_visible()  # folded away, not offered first
    assert "fail" not in page.inner_text("body").lower()
    shopper.shot("16-pay-confirming")
    page.goto(shopper.url(f"/orders/{order_id}/result"))
    expect(heading(page)).to_have_text("Confirming your payment")
    assert "fail" not in page.inner_text("body").lower()
