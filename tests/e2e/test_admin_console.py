"""The ops console in a real browser: the admin index says what needs a person and links to
exactly those rows; money reads ¥59.00; the order page shows its audit trail and offers nothing
to add; the staff log is listed; the lists fit a 1440 × 900 screen; and screenshots of it all
in English and Simplified Chinese."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone
from playwright.sync_api import expect

from orders.models import Order
from payments.decision import attempt_apply_trade_status
from payments.gateways.base import TradeOutcome, TradeStatus
from payments.models import PaymentAttempt, StateChange
from reconciliation.models import Finding, StatementRun
from refunds.services import refund_apply_result, refund_request
from shop.models import OutboxEvent, Product
from tests.e2e.conftest import WAIT_MS, Shopper
from tests.support.factories import make_attempt, make_order, make_paid_order

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-Ops-12345"
ATTEMPTS = "/admin/payments/paymentattempt/"
REFUNDS = "/admin/refunds/refund/"
FINDINGS = "/admin/reconciliation/finding/"
ORDERS = "/admin/orders/order/"
STATE_CHANGES = "/admin/payments/statechange/"
LOG = "/admin/admin/logentry/"
# The four busy lists, with their status and amount columns (the ones ops must see).
LISTS = {
    "attempts": (ATTEMPTS, ("status", "attempt_amount")),
    "refunds": (REFUNDS, ("status", "refund_amount")),
    "findings": (FINDINGS, ("state", "gateway_money", "local_money")),
    "orders": (ORDERS, ("status", "total")),
}

FITS_JS = """(columns) => {
    const results = document.querySelector("#changelist-form .results");
    const rights = {};
    for (const name of columns) {
        const th = document.querySelector("#result_list th.column-" + name);
        rights[name] = th ? th.getBoundingClientRect().right : null;
    }
    return {
        page: document.documentElement.scrollWidth,
        window: window.innerWidth,
        results: results.scrollWidth,
        resultsBox: results.clientWidth,
        rows: document.querySelectorAll("#result_list tbody tr").length,
        rights,
    };
}"""


@dataclass
class Scene:
    """One row of each kind that needs a person (and some that do not)."""

    mismatched: PaymentAttempt
    paid_order: Order
    product: Product


@pytest.fixture
def scene(transactional_db: Any, settings: Any) -> Scene:
    settings.TASK_FOLLOW_UPS_ENABLED = False  # no worker: rows stay as made here
    settings.REFUND_APPROVAL_THRESHOLD = 5000
    boss = User.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    product = Product.objects.create(
        sku="TEA", name="Jasmine green tea", price_amount=5900, stock=100
    )
    mismatched = make_attempt(make_order("TEA"))
    attempt_apply_trade_status(
        attempt_id=mismatched.pk,
        status=TradeStatus(
            outcome=TradeOutcome.PAID, out_trade_no=mismatched.out_trade_no, amount=5901
        ),
        source="notification",
    )
    mismatched.refresh_from_db()
    # Silent through the poll schedule (the longest reason label).
    silent = make_attempt(make_order("TEA"), channel="wechat")
    PaymentAttempt.objects.filter(pk=silent.pk).update(
        status="needs_attention", attention_reason="gateway_silent"
    )
    make_attempt(make_order("TEA"))  # paying: nobody's business yet
    paid_order = make_paid_order(sku="POT", price=10000)
    refund_request(order_id=paid_order.pk, amount=6000, reason="ops", note="above 5000")
    failed = refund_request(order_id=paid_order.pk, amount=1000, reason="customer_request")
    refund_apply_result(out_refund_no=failed.out_refund_no, outcome="failed", error="NOPE")
    run = StatementRun.objects.create(
        channel="alipay", statement_date=dt.date(2026, 1, 2), status="done"
    )
    Finding.objects.create(
        run=run,
        kind="not_recorded",
        state="open",
        out_trade_no=mismatched.out_trade_no,
        attempt=mismatched,
        gateway_amount=5901,
        local_amount=5900,
        detail="the gateway captured 59.01",
    )
    Finding.objects.create(
        run=run,
        kind="refund_amount_mismatch",
        state="healed",
        out_trade_no=paid_order.paid_attempt.out_trade_no,  # type: ignore[union-attr]
        out_refund_no=failed.out_refund_no,
        gateway_amount=1000,
        local_amount=999,
    )
    Finding.objects.create(
        run=run,
        kind="unknown_trade",
        state="resolved",
        out_trade_no="OPTHEGATEWAYKNOWSANDWEDONOT",
        gateway_amount=12800,
        note="a test payment in the merchant console",
        resolved_by=boss,
        resolved_at=timezone.now(),
    )
    now = timezone.now()
    for status, error in (
        ("pending", "webhook answered 500"),
        ("dead", "timeout"),
        ("pending", ""),
    ):
        OutboxEvent.objects.create(
            topic="order.test", payload={}, status=status, last_error=error, next_attempt_at=now
        )
    return Scene(mismatched=mismatched, paid_order=paid_order, product=product)


@pytest.fixture
def console(browser: Any, live_server: Any) -> Iterator[Any]:
    """Open an admin browser: ``console(username, locale=..., width=...)`` → a logged-in Shopper
    (its ``shot`` names screenshots admin--<name>)."""
    contexts: list[Any] = []

    def open_as(username: str, *, locale: str = "en-US", width: int = 1440) -> Shopper:
        context = browser.new_context(viewport={"width": width, "height": 900}, locale=locale)
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        admin = Shopper(context, live_server.url, None, "admin")
        page = admin.page
        page.goto(admin.url("/admin/login/?next=/admin/"))
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.locator("#login-form input[type=submit]").click()
        page.wait_for_url(admin.url("/admin/"))
        return admin

    yield open_as
    for context in contexts:
        context.close()


def rows(page: Any) -> int:
    return int(page.locator("#result_list tbody tr").count())


def dashboard_counts(page: Any) -> dict[str, int]:
    found = {}
    for row in page.locator("#needs-a-person tr[data-watch]").all():
        found[row.get_attribute("data-watch")] = int(row.locator("a.count").inner_text())
    return found


def test_the_dashboard_counts_what_needs_a_person_and_links_to_exactly_those_rows(
    scene: Scene, console: Any
) -> None:
    admin = console("boss")
    page = admin.page
    expect(page.get_by_role("heading", name="Needs a person")).to_be_visible()
    expect(page.locator("#admin-time-zone")).to_have_text("Times in Asia/Shanghai (CST, UTC+08:00)")
    counts = dashboard_counts(page)
    assert counts == {
        "attempts-needs_attention": 2,
        "attempts-gateway_silent": 1,
        "attempts-amount_mismatch": 1,
        "attempts-contradiction": 0,
        "refunds-awaiting_approval": 1,
        "refunds-failed": 1,
        "findings-open": 1,
        "outbox-failing": 1,
        "outbox-dead": 1,
    }
    for key, count in counts.items():
        page.goto(admin.url("/admin/"))
        page.locator(f"tr[data-watch='{key}'] a.count").click()
        page.wait_for_url(re.compile(r"/admin/\w+/\w+/\?"))
        assert rows(page) == count, (key, page.url)
        if count:  # the filter is visible, not only in the address
            expect(page.locator("#changelist-filter")).to_be_visible()
    # The refund awaiting approval is the one above the threshold.
    page.goto(admin.url("/admin/"))
    page.locator("tr[data-watch='refunds-awaiting_approval'] a.count").click()
    page.wait_for_url(re.compile(r"approval=awaiting"))
    expect(page.locator("#result_list tbody")).to_contain_text("¥60.00")
    expect(page.locator("#changelist-filter")).to_contain_text("Pending approval")


def test_money_reads_as_yuan_in_the_lists_and_on_the_order_page(scene: Scene, console: Any) -> None:
    admin = console("boss")
    page = admin.page
    page.goto(admin.url(ATTEMPTS))
    expect(page.locator("#result_list td.field-attempt_amount").first).to_have_text(
        re.compile(r"^¥\d+\.\d\d$")
    )
    expect(page.locator("#result_list")).to_contain_text("¥59.00")
    expect(page.locator("#result_list")).to_contain_text("amount mismatch")
    expect(
        page.locator("#result_list span[title^='Gateway reports another amount']")
    ).to_have_count(1)
    page.goto(admin.url(REFUNDS))
    expect(page.locator("#result_list")).to_contain_text("¥60.00")
    expect(page.locator("#result_list")).to_contain_text("¥10.00")
    page.goto(admin.url(FINDINGS))
    expect(page.locator("#result_list")).to_contain_text("¥59.01")
    page.goto(admin.url(f"{ORDERS}{scene.paid_order.pk}/change/"))
    attempts = page.locator("fieldset", has=page.locator("h2", has_text="Payment attempts"))
    expect(attempts).to_contain_text("¥100.00")
    lines = page.locator("fieldset", has=page.locator("h2", has_text="Order lines"))
    expect(lines).to_contain_text("¥100.00")
    refunds = page.locator("fieldset", has=page.locator("h2", has_text="Refunds"))
    expect(refunds).to_contain_text("¥60.00")
    expect(page.locator("div.field-total")).to_contain_text("¥100.00")


def test_the_order_page_offers_nothing_to_add_and_shows_its_state_changes_in_order(
    scene: Scene, console: Any
) -> None:
    admin = console("boss")
    page = admin.page
    order = scene.paid_order
    page.goto(admin.url(f"{ORDERS}{order.pk}/change/"))
    expect(page.locator("h2", has_text="State changes")).to_be_visible()
    # Django's script keeps a hidden link when adding is not allowed: none may be visible.
    expect(page.locator("text=Add another >> visible=true")).to_have_count(0)
    expect(page.locator(".add-row >> visible=true")).to_have_count(0)
    expect(page.locator("input[name$='-DELETE']")).to_have_count(0)
    expect(page.locator("#state_changes-group")).to_be_visible()
    trail = page.locator("fieldset", has=page.locator("h2", has_text="State changes"))
    expected = list(
        StateChange.objects.filter(order=order)
        .order_by("created_at", "id")
        .values_list("transition", flat=True)
    )
    assert len(expected) >= 3  # attempt captured, order paid, a refund failed
    shown = trail.locator("td.field-transition").all_inner_texts()
    assert [t.strip() for t in shown] == expected
    times = [t.strip() for t in trail.locator("td.field-when").all_inner_texts()]
    assert times == sorted(times) and all(t.endswith(" CST") for t in times)
    # Read-only audit data elsewhere too: an attempt's gateway events.
    page.goto(admin.url(f"{ATTEMPTS}{scene.mismatched.pk}/change/"))
    expect(page.locator("h2", has_text="Gateway events")).to_have_count(1)
    expect(page.locator("text=Add another >> visible=true")).to_have_count(0)


def test_the_audit_trail_is_listed_and_found_by_trade_no(scene: Scene, console: Any) -> None:
    admin = console("boss")
    page = admin.page
    page.goto(admin.url(STATE_CHANGES))
    assert rows(page) == StateChange.objects.count() > 0
    expect(page.locator("#result_list thead")).to_contain_text("From → to")
    page.fill("#searchbar", scene.mismatched.out_trade_no)
    page.locator("#changelist-search input[type=submit]").click()
    page.wait_for_url(re.compile(r"\?q="))
    assert rows(page) == StateChange.objects.filter(attempt=scene.mismatched).count() == 1
    row = page.locator("#result_list tbody tr")
    expect(row).to_contain_text("paying → needs_attention")
    expect(row).to_contain_text("notification")
    expect(row.locator(f"a[title='{scene.mismatched.out_trade_no}']")).to_have_count(1)
    expect(page.locator(".object-tools .addlink")).to_have_count(0)


def test_the_staff_log_lists_a_change_made_through_the_admin(scene: Scene, console: Any) -> None:
    admin = console("boss")
    page = admin.page
    page.goto(admin.url(f"/admin/shop/product/{scene.product.pk}/change/"))
    expect(page.locator("#id_price_amount_helptext")).to_have_text(
        "in fen (minor units): 5900 = ¥59.00"
    )
    page.fill("#id_stock", "42")
    page.locator("input[name=_save]").click()
    page.wait_for_url(admin.url("/admin/shop/product/"))
    assert Product.objects.get(pk=scene.product.pk).stock == 42
    page.goto(admin.url(LOG))
    entry = page.locator("#result_list tbody tr").first
    expect(entry).to_contain_text("boss")
    expect(entry).to_contain_text("Jasmine green tea")
    expect(entry).to_contain_text("Changed Stock.")
    expect(entry.locator("a", has_text="Jasmine green tea")).to_have_attribute(
        "href", f"/admin/shop/product/{scene.product.pk}/change/"
    )
    page.fill("#searchbar", "Stock")
    page.locator("#changelist-search input[type=submit]").click()
    page.wait_for_url(re.compile(r"\?q="))
    assert rows(page) == 1


def test_staff_with_only_the_order_view_permission_see_no_other_counts_nor_the_log(
    scene: Scene, console: Any
) -> None:
    viewer = User.objects.create_user("viewer", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    admin = console("viewer")
    page = admin.page
    expect(page.get_by_role("heading", name="Needs a person")).to_be_visible()
    expect(page.locator("#needs-a-person tr[data-watch]")).to_have_count(0)
    expect(page.locator("#needs-a-person")).to_contain_text("None of these lists is open to you.")
    expect(page.locator("#needs-a-person")).not_to_contain_text("Refunds")
    response = page.goto(admin.url(LOG))
    assert response is not None and response.status == 403
    response = page.goto(admin.url(ORDERS))
    assert response is not None and response.status == 200


def test_the_busy_lists_fit_a_1440_screen_with_status_and_amount_in_view(
    scene: Scene, console: Any
) -> None:
    admin = console("boss", width=1440)
    page = admin.page
    assert page.evaluate("window.innerWidth") == 1440
    for name, (url, columns) in LISTS.items():
        page.goto(admin.url(url))
        measured = page.evaluate(FITS_JS, list(columns))
        assert measured["rows"] > 0, name
        assert measured["page"] <= measured["window"], (name, measured)
        # The results box scrolls by itself: it must not have to either.
        assert measured["results"] <= measured["resultsBox"], (name, measured)
        for column, right in measured["rights"].items():
            assert right is not None and right <= measured["window"], (name, column, measured)


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_screenshots_of_the_console(scene: Scene, console: Any, locale: str) -> None:
    admin = console("boss", locale=locale)
    page = admin.page
    expect(page.locator("html")).to_have_attribute("lang", "en" if locale == "en-US" else "zh-hans")
    expect(page.locator("#needs-a-person")).to_be_visible()
    admin.shot(f"{locale}--dashboard")
    pages = {
        "order": f"{ORDERS}{scene.paid_order.pk}/change/",
        "orders": ORDERS,
        "attempts": ATTEMPTS,
        "refunds": REFUNDS,
        "findings": FINDINGS,
        "state-changes": STATE_CHANGES,
        "log": LOG,
        "outbox": "/admin/shop/outboxevent/",
    }
    for name, path in pages.items():
        response = page.goto(admin.url(path))
        assert response is not None and response.ok, name
        admin.shot(f"{locale}--{name}")
