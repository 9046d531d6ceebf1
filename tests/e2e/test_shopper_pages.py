"""The pages as shoppers meet them, in Chromium: the right default per device, one clear way to
pay while a QR code is live, the shop's time zone, Simplified Chinese and English, pictures, a
favicon, and layouts that fit 360 px to 1,440 px — with screenshots of each in both languages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from orders.models import Order
from tests.e2e.conftest import WAIT_MS, Shopper

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
LANGUAGES = {"en": "en-US", "zh": "zh-CN"}
# What each language calls the things a test clicks or reads.
WORDS = {
    "en": {
        "add": "Add to cart",
        "checkout": "Check out",
        "email": "E-mail address",
        "place": "Place order",
        "pay_now": "Pay now",
        "pay_title": "Pay for your order",
        "paid_title": "Payment received",
        "cashier_paid": "Paid",
        "cashier_pay": r"^Pay",
        "another": "Pay another way",
    },
    "zh": {
        "add": "加入购物车",
        "checkout": "去结账",
        "email": "电子邮箱",
        "place": "提交订单",
        "pay_now": "立即支付",
        "pay_title": "支付您的订单",
        "paid_title": "已收到付款",
        "cashier_paid": "支付成功",
        "cashier_pay": r"^支付",
        "another": "换一种方式支付",
    },
}


@pytest.fixture
def visitor(
    browser: Any, gateways_at_sandbox: Any, live_server: Any, catalog: Any, request: Any
) -> Iterator[Any]:
    """Open a shopper's browser with a given language, width and device: ``visitor(lang=...)``."""
    contexts: list[Any] = []

    def open_shopper(
        *, lang: str = "en", width: int = 1100, height: int = 900, phone: bool = False
    ) -> Shopper:
        options: dict[str, Any] = {
            "viewport": {"width": width, "height": height},
            "locale": LANGUAGES[lang],
        }
        if phone:
            options |= {"user_agent": IPHONE, "is_mobile": True, "has_touch": True}
        context = browser.new_context(**options)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        # test-artifacts/screenshots/pages-zh-360px-<test>--<page>.png
        test = request.node.originalname.removeprefix("test_")[:48]
        name = f"pages-{lang}-{width}px-{test}"
        return Shopper(context, live_server.url, gateways_at_sandbox, name)

    yield open_shopper
    for context in contexts:
        context.close()


def buy(shopper: Shopper, lang: str, *, screenshots: bool = False) -> str:
    """Product list → cart → checkout → order page, by the words of ``lang``."""
    words = WORDS[lang]
    page = shopper.page
    page.goto(shopper.url("/"))
    if screenshots:
        shopper.shot("01-products")
    page.locator("li.product[data-sku='TEA']").get_by_role("button", name=words["add"]).click()
    page.wait_for_url("**/cart/")
    if screenshots:
        shopper.shot("02-cart")
    page.get_by_role("link", name=words["checkout"]).click()
    page.get_by_label(words["email"]).fill("shopper@example.com")
    if screenshots:
        shopper.shot("03-checkout")
    page.get_by_role("button", name=words["place"]).click()
    page.wait_for_url(re.compile(r"/orders/[^/]+/$"))
    if screenshots:
        shopper.shot("04-order")
    return page.url.rstrip("/").rsplit("/", 1)[-1]


def no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    inner = page.evaluate("window.innerWidth")
    assert width <= inner, f"{page.url} scrolls sideways: {width} px wide in a {inner} px window"


def on_one_line(locator: Any) -> None:
    """An order number a shopper reads and copies must not be broken across lines."""
    expect(locator.first).to_be_visible()
    lines = locator.first.evaluate("el => el.getClientRects().length")
    assert lines == 1, f"the order number wraps onto {lines} lines"


def checked(page: Any, name: str) -> list[str]:
    return page.eval_on_selector_all(
        f"input[name={name}]:checked", "nodes => nodes.map(n => n.value)"
    )


# --- 1. the right default per device, one clear way to pay -------------------------------------


def test_a_phone_defaults_to_paying_in_its_browser_and_a_pc_to_the_qr_code(visitor: Any) -> None:
    phone = visitor(width=390, height=844, phone=True)
    order_id = buy(phone, "en")
    phone.page.goto(phone.url(f"/orders/{order_id}/pay"))
    assert checked(phone.page, "client") == ["wap"]
    # The choice that fits the device comes first, and the phone is told WeChat Pay uses its app.
    first = phone.page.locator("input[name=client]").first
    assert first.get_attribute("value") == "wap"
    expect(phone.page.locator(".choice-hint")).to_contain_text("WeChat app")
    no_sideways_scroll(phone.page)
    phone.shot("phone-pay-choose")

    pc = visitor(width=1280)
    order_id = buy(pc, "en")
    pc.page.goto(pc.url(f"/orders/{order_id}/pay"))
    assert checked(pc.page, "client") == ["pc"]
    assert pc.page.locator("input[name=client]").first.get_attribute("value") == "pc"
    expect(pc.page.locator(".choice-hint")).to_have_count(0)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_while_a_qr_code_is_live_paying_another_way_is_folded_and_says_it_cancels_it(
    visitor: Any, lang: str
) -> None:
    shopper = visitor(lang=lang)
    order_id = buy(shopper, lang)
    page = shopper.page
    page.goto(shopper.url(f"/orders/{order_id}/pay"))
    shopper.pay_with("alipay", "pc")
    expect(page.locator("figure.qr svg")).to_be_visible()
    other = page.locator("details#pay-another")
    expect(other).to_have_count(1)
    assert other.get_attribute("open") is None, "the other ways are shown open under a live QR"
    expect(page.locator("#pay-button")).not_to_be_visible()
    shopper.shot("qr-live-folded")

    page.locator("details#pay-another > summary").click()
    expect(page.locator("#pay-button")).to_be_visible()
    # Nothing is chosen for the shopper, and the button is not the page's primary action.
    assert checked(page, "channel") == [] and checked(page, "client") == []
    assert "secondary" in (page.locator("#pay-button").get_attribute("class") or "")
    warning = page.locator(".switch-warning")
    expect(warning).to_contain_text(
        "cancels the Alipay QR code" if lang == "en" else "取消上面显示的支付宝二维码"
    )
    shopper.shot("qr-live-another-way")

    # Choosing it does what it said: the QR shown is closed, the new one replaces it.
    old_code = shopper.code_url()
    shopper.pay_with("wechat", "pc")
    expect(page.locator("section.attempt[data-channel=wechat] figure.qr svg")).to_be_visible()
    assert shopper.code_url() != old_code
    trades = {t["channel"]: t["status"] for t in shopper.sandbox.ledger()["trades"]}
    assert trades.get("wechat") == "NOTPAY"
    order = Order.objects.get(public_id=order_id)
    assert [a.status for a in order.attempts.order_by("created_at")] == ["closed", "paying"]


# --- 2. the shopper's language and the shop's time -----------------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_whole_purchase_in_each_language_with_times_in_the_shops_zone(
    visitor: Any, lang: str
) -> None:
    words = WORDS[lang]
    shopper = visitor(lang=lang)
    order_id = buy(shopper, lang, screenshots=True)
    page = shopper.page
    expect(page.locator("html")).to_have_attribute("lang", "en" if lang == "en" else "zh-Hans")
    # "Please pay before 22:15 CST": the deadline in the shop's zone (Asia/Shanghai), named.
    order = Order.objects.get(public_id=order_id)
    from django.utils import timezone

    deadline = timezone.localtime(order.expires_at)
    assert str(deadline.tzinfo) == "Asia/Shanghai"
    expect(page.locator("time").first).to_have_text(f"{deadline:%H:%M} CST")
    expect(page.locator(".site-footer")).to_contain_text("Asia/Shanghai")

    page.get_by_role("link", name=words["pay_now"]).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(words["pay_title"])
    shopper.shot("05-pay-choose")
    shopper.pay_with("alipay", "pc")
    shopper.shot("06-pay-qr")

    cashier = shopper.context.new_page()
    cashier.goto(shopper.code_url())
    expect(cashier.locator("html")).to_have_attribute("lang", "en" if lang == "en" else "zh-Hans")
    # The cashier shows the deadline in Beijing time, with its name, not a raw timestamp.
    expect(cashier.locator("#expires")).to_contain_text("CST (UTC+08:00)")
    expect(cashier.locator("#expires")).not_to_contain_text(re.compile(r"\dT\d"))
    shopper.shot("07-cashier", cashier)
    cashier.get_by_role("button", name=re.compile(words["cashier_pay"])).click()
    expect(cashier.locator("#status")).to_have_text(words["cashier_paid"])
    cashier.close()

    page.wait_for_url(f"**/orders/{order_id}/result")
    expect(page.get_by_role("heading", level=1)).to_have_text(words["paid_title"])
    paid_at = timezone.localtime(Order.objects.get(public_id=order_id).paid_at)
    expect(page.locator(".facts time")).to_have_text(f"{paid_at:%Y-%m-%d %H:%M} CST")
    if lang == "zh":
        expect(page.locator(".facts")).to_contain_text("支付宝")
    shopper.shot("08-result-paid")


def test_the_language_switch_changes_every_page_and_is_remembered(visitor: Any) -> None:
    shopper = visitor(lang="en")
    page = shopper.page
    page.goto(shopper.url("/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Products")
    page.get_by_role("button", name="简体中文").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("商品")
    page.goto(shopper.url("/cart/"))
    expect(page.get_by_role("heading", level=1)).to_have_text("您的购物车")
    page.get_by_role("button", name="English").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your cart")


# --- 3. a shop that looks real ---------------------------------------------------------------------


def test_products_have_pictures_and_the_site_has_a_favicon(visitor: Any) -> None:
    shopper = visitor()
    page = shopper.page
    page.goto(shopper.url("/"))
    pictures = page.locator("img.product-art")
    expect(pictures).to_have_count(2)
    for index in range(2):
        picture = pictures.nth(index)
        assert picture.evaluate("img => img.complete && img.naturalWidth > 0"), (
            "a picture is broken"
        )
        assert picture.get_attribute("src", timeout=WAIT_MS).startswith("/static/shop/products/")
    answer = requests.get(shopper.url("/favicon.ico"), timeout=10)
    assert answer.status_code == 200 and "svg" in answer.headers["Content-Type"]


@pytest.mark.parametrize("width", [360, 1440])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_order_and_receipt_pages_fit_the_screen_with_the_order_number_whole(
    visitor: Any, width: int, lang: str
) -> None:
    shopper = visitor(lang=lang, width=width, height=800, phone=width < 400)
    order_id = buy(shopper, lang)
    page = shopper.page
    no_sideways_scroll(page)
    on_one_line(page.locator("h1 .order-no"))
    shopper.shot("order")

    page.goto(shopper.url(f"/orders/{order_id}/pay"))
    shopper.pay_with("wechat", "wap" if width < 400 else "pc")
    if width < 400:
        shopper.page.wait_for_url(re.compile(r"/cashier/"))
        no_sideways_scroll(page)  # the sandbox cashier's title fits the phone too
        shopper.shot("cashier")
        page.get_by_role("button", name=re.compile(WORDS[lang]["cashier_pay"])).click()
        page.locator("#return-link").click()
    else:
        no_sideways_scroll(page)
        shopper.pay_at_cashier(shopper.code_url()).close() if lang == "en" else _pay_zh(shopper)
    page.wait_for_url(f"**/orders/{order_id}/result")
    expect(page.get_by_role("heading", level=1)).to_have_text(WORDS[lang]["paid_title"])
    no_sideways_scroll(page)
    on_one_line(page.locator(".facts .order-no"))
    shopper.shot("receipt")


def _pay_zh(shopper: Shopper) -> None:
    cashier = shopper.context.new_page()
    cashier.goto(shopper.code_url())
    cashier.get_by_role("button", name=re.compile(WORDS["zh"]["cashier_pay"])).click()
    expect(cashier.locator("#status")).to_have_text(WORDS["zh"]["cashier_paid"])
    cashier.close()
