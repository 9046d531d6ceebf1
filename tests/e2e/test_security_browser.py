"""Every shopper page in the browser: forms carry CSRF tokens and the server refuses them
without; the CSP holds (no violations, nothing loaded from another origin); pages are labelled
and usable with a keyboard and on a phone-sized screen."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from orders.models import Order
from tests.e2e.conftest import Shopper

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FORMS_JS = """() => [...document.forms].map((form) => ({
    method: form.method,
    action: form.action,
    fields: Object.fromEntries(new FormData(form)),
}))"""

# Every visible form control has an accessible name; every page has one h1 and a language.
A11Y_JS = """() => {
    const problems = [];
    if (!document.documentElement.lang) problems.push("no lang");
    if (document.querySelectorAll("h1").length !== 1) problems.push("h1 count");
    for (const el of document.querySelectorAll("input, select, textarea, button")) {
        if (el.type === "hidden") continue;
        const named = el.labels?.length || el.getAttribute("aria-label")
            || (el.tagName === "BUTTON" && el.textContent.trim());
        if (!named) problems.push("unlabelled " + el.outerHTML.slice(0, 80));
    }
    for (const svg of document.querySelectorAll("main svg")) {
        if (svg.getAttribute("role") !== "img" || !svg.getAttribute("aria-label")) {
            problems.push("svg without name");
        }
    }
    const status = document.getElementById("order-status");
    if (status && status.getAttribute("aria-live") !== "polite") problems.push("status not live");
    return problems;
}"""


def walk(shopper: Shopper) -> dict[str, str]:
    """Visit every kind of shopper page once; returns {name: url}."""
    page = shopper.page
    order_id = shopper.buy()
    urls = {"order": page.url}
    page.goto(shopper.url(f"/orders/{order_id}/pay"))
    shopper.pay_with("alipay", "pc")
    page.goto(shopper.url(f"/orders/{order_id}/pay"))  # the "have you already paid?" version
    expect(page.locator("section.ask")).to_be_visible()
    urls |= {
        "products": shopper.url("/"),
        "pay": page.url,
        "result": shopper.url(f"/orders/{order_id}/result"),
    }
    page.goto(shopper.url("/"))
    page.locator("li.product[data-sku=TEA] button[type=submit]").click()
    page.wait_for_url("**/cart/")
    urls |= {"cart": page.url, "checkout": shopper.url("/checkout/")}
    closed_id = shopper.buy()
    shopper.page.get_by_role("button", name="Cancel order").click()
    expect(page.get_by_role("heading", name="This order is closed")).to_be_visible()
    urls["closed"] = shopper.url(f"/orders/{closed_id}/")
    page.goto(shopper.url("/"))
    page.locator("li.product[data-sku=TEA] button[type=submit]").click()
    page.wait_for_url("**/cart/")
    return urls


def test_every_form_carries_a_csrf_token_and_is_refused_without_it(shopper: Shopper) -> None:
    urls = walk(shopper)
    page = shopper.page
    forms: dict[str, dict[str, str]] = {}
    for name, url in urls.items():
        page.goto(url)
        for form in page.evaluate(FORMS_JS):
            assert form["method"] == "post", (name, form)
            assert len(form["fields"].get("csrfmiddlewaretoken", "")) >= 32, (name, form)
            forms[form["action"]] = form["fields"]
    actions = {action.removeprefix(shopper.base).split("/")[-1] for action in forms}
    assert {"add", "update", "", "submit", "check", "cancel", "reorder"} <= actions, actions

    before = list(Order.objects.values_list("public_id", "status").order_by("public_id"))
    http = shopper.context.request  # the browser's cookies, without the page's token
    for action, fields in forms.items():
        without = {k: v for k, v in fields.items() if k != "csrfmiddlewaretoken"}
        assert http.post(action, form=without, max_redirects=0).status == 403, action
        forged = {**without, "csrfmiddlewaretoken": "x" * 64}
        assert http.post(action, form=forged, max_redirects=0).status == 403, action
    assert list(Order.objects.values_list("public_id", "status").order_by("public_id")) == before


def test_pages_hold_their_csp_and_load_nothing_from_elsewhere(shopper: Shopper) -> None:
    page = shopper.page
    requested: list[str] = []
    violations: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    urls = walk(shopper)
    for name, url in urls.items():
        response = page.goto(url)
        assert response is not None and response.ok, name
        headers = response.headers
        assert "content-security-policy" in headers, name
        assert headers["x-frame-options"] == "DENY", name
        assert '<script src="http' not in page.content(), name
        page.wait_for_load_state("load")
    assert violations == []
    foreign = [u for u in requested if not u.startswith(shopper.base) and not u.startswith("data:")]
    # Only the sandbox cashier the test opens as "the phone" is elsewhere, and walk() opens none.
    assert foreign == []


def test_pages_are_labelled_keyboard_usable_and_fit_a_phone(
    browser: Any, gateways_at_sandbox: Any, live_server: Any, catalog: Any
) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        phone = Shopper(context, live_server.url, gateways_at_sandbox, "phone")
        urls = walk(phone)
        page = phone.page
        for name, url in urls.items():
            page.goto(url)
            assert page.evaluate(A11Y_JS) == [], name
            # Nothing wider than the screen: no sideways scrolling on a phone.
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
        page.goto(urls["pay"])
        phone.shot("17-phone-pay-ask")
        page.goto(urls["products"])
        phone.shot("18-phone-products")

        # The keyboard reaches the skip link first, and the skip link lands on the content.
        page.goto(urls["products"])
        page.keyboard.press("Tab")
        expect(page.locator("a.skip")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("main")).to_be_focused()
        # On the payment page the question is where the focus starts.
        page.goto(urls["pay"])
        expect(page.locator("#ask-title")).to_be_focused()
    finally:
        context.close()
