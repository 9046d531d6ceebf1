"""Browser tests: Debian's Chromium (never a downloaded browser) driven by Playwright's sync API
against the Django live server and the sandbox gateway process.

Each test gets its own Playwright, browser and context (cookie jar = one shopper), so tests
share nothing. Playwright's sync API keeps an asyncio loop running in the test's thread while it
is started; the ORM calls in a test body are plain synchronous calls, so Django's async guard is
lifted for the test's duration only, and Playwright is stopped before the database is flushed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from playwright.sync_api import expect

from shop.models import Product

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# Long enough for a loaded CI machine, short enough that a hang shows up quickly.
WAIT_MS = 15_000


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def _unavailable(reason: str) -> None:
    """Chromium is required in CI (fail loudly) and optional on a workstation (skip, say how)."""
    if _in_ci():
        pytest.fail(f"{reason} CI must run the browser tests (CI is set).", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        _unavailable(
            f"Chromium not found at {CHROMIUM}: run `apt-get install chromium` "
            "(or set CHROMIUM_PATH) to run the browser tests."
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed: install the dev dependencies.")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    playwright = sync_playwright().start()
    try:
        try:
            launched = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
        except Exception as error:
            _unavailable(
                f"Chromium at {CHROMIUM} did not start ({error}); `apt-get install chromium`."
            )
        yield launched
        launched.close()
    finally:
        # Connections opened while Playwright ran live in its context, not the one
        # pytest-django closes: close them here or the test database cannot be dropped.
        connections.close_all()
        playwright.stop()


class Shopper:
    """One shopper's browser (one cookie jar) on the shop, and their phone at the sandbox."""

    def __init__(self, context: Any, base_url: str, sandbox: Any, test_name: str) -> None:
        self.context = context
        self.base = base_url
        self.sandbox = sandbox
        self.prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", test_name).strip("-")
        self.page = context.new_page()

    def url(self, path: str) -> str:
        return self.base + path

    def shot(self, name: str, page: Any | None = None) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.prefix}--{name}.png"
        (page or self.page).screenshot(path=str(path), full_page=True)
        return path

    # --- the shop ---------------------------------------------------------------------------

    def buy(self, sku: str = "TEA", *, screenshots: bool = False) -> str:
        """Product list → cart → checkout → the order page. Returns the order's public id."""
        page = self.page
        page.goto(self.url("/"))
        if screenshots:
            self.shot("01-products")
        page.locator(f"li.product[data-sku='{sku}'] button[type=submit]").click()
        page.wait_for_url("**/cart/")
        if screenshots:
            self.shot("02-cart")
        page.get_by_role("link", name="Check out").click()
        page.wait_for_url("**/checkout/")
        page.get_by_label("E-mail address").fill("shopper@example.com")
        if screenshots:
            self.shot("03-checkout")
        page.get_by_role("button", name="Place order").click()
        page.wait_for_url(re.compile(r"/orders/[^/]+/$"))
        if screenshots:
            self.shot("04-order")
        return page.url.rstrip("/").rsplit("/", 1)[-1]

    def choose(self, channel: str, client: str = "pc", page: Any | None = None) -> None:
        page = page or self.page
        folded = page.locator("details#pay-another:not([open]) > summary")
        if folded.count():
            folded.click()  # a payment is open: the other ways are folded
        page.check(f"input[name=channel][value={channel}]")
        page.check(f"input[name=client][value={client}]")

    def pay_with(self, channel: str, client: str = "pc", page: Any | None = None) -> None:
        """Choose and press Pay on the payment page; for pc, wait for the QR code."""
        page = page or self.page
        self.choose(channel, client, page)
        page.locator("#pay-button").click()
        if client == "pc":
            page.locator(f"section.attempt[data-channel={channel}] figure.qr svg").wait_for()

    def code_url(self, page: Any | None = None) -> str:
        value = (page or self.page).locator("figure.qr").get_attribute("data-code-url")
        assert value, "the payment page shows no QR code"
        return str(value)

    # --- the shopper's phone ------------------------------------------------------------------

    def pay_at_cashier(self, code_url: str, *, screenshot: str = "") -> Any:
        """Open the gateway's cashier page (what scanning the QR code does) and press Pay."""
        cashier = self.context.new_page()
        cashier.goto(code_url)
        cashier.locator("#status").wait_for()
        if screenshot:
            self.shot(screenshot, cashier)
        cashier.get_by_role("button", name=re.compile(r"^Pay")).click()
        expect(cashier.locator("#status")).to_have_text("Paid")
        return cashier


@pytest.fixture
def catalog(transactional_db: Any) -> list[Product]:
    return [
        Product.objects.create(sku="TEA", name="Jasmine green tea", price_amount=2599, stock=50),
        Product.objects.create(sku="POT", name="Ceramic teapot", price_amount=12800, stock=5),
    ]


@pytest.fixture
def shopper(
    browser: Any, gateways_at_sandbox: Any, live_server: Any, catalog: Any, request: Any
) -> Iterator[Shopper]:
    context = browser.new_context(viewport={"width": 1100, "height": 900}, locale="en-US")
    context.set_default_timeout(WAIT_MS)
    yield Shopper(context, live_server.url, gateways_at_sandbox, request.node.name)
    context.close()
