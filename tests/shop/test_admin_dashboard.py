"""The ops console in the admin, as data: the "Needs a person" counts equal the rows behind
their links and follow the user's permissions; the audit trail and the staff log are view-only;
admin actions name the staff user in the cause; money and times are shown one way."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.utils import timezone

from payments.decision import attempt_apply_trade_status
from payments.gateways.base import TradeOutcome, TradeStatus
from payments.models import PaymentAttempt, StateChange
from reconciliation.models import Finding, StatementRun
from refunds.services import refund_apply_result, refund_request
from shop.admin import NEEDS_A_PERSON
from shop.admin_display import local_time, staff_cause, time_zone_shown
from shop.dashboard import needs_a_person
from shop.models import OutboxEvent, Product
from tests.support.factories import make_attempt, make_order, make_paid_order
from tests.support.gateway_double import LEDGER

pytestmark = pytest.mark.django_db

PASSWORD = "pw-Ops-12345"
WATCHES = {
    "attempts-needs_attention",
    "attempts-gateway_silent",
    "attempts-amount_mismatch",
    "attempts-contradiction",
    "refunds-awaiting_approval",
    "refunds-failed",
    "findings-open",
    "outbox-failing",
    "outbox-dead",
}


@pytest.fixture(autouse=True)
def _no_follow_ups(settings: Any) -> None:
    # Nothing is sent to a worker: refunds stay as the test leaves them.
    settings.TASK_FOLLOW_UPS_ENABLED = False
    settings.REFUND_APPROVAL_THRESHOLD = 5000


def staff(username: str, *perms: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def logged_in(user: User) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def counts(user: User) -> dict[str, int]:
    return {t.key: t.count for g in needs_a_person(user, NEEDS_A_PERSON) for t in g.tallies}


def mismatched_attempt() -> PaymentAttempt:
    """An attempt the gateway reports another amount for: needs_attention, amount_mismatch."""
    attempt = make_attempt(make_order(price=5900))
    attempt_apply_trade_status(
        attempt_id=attempt.pk,
        status=TradeStatus(
            outcome=TradeOutcome.PAID, out_trade_no=attempt.out_trade_no, amount=5901
        ),
        source="test",
    )
    attempt.refresh_from_db()
    assert (attempt.status, attempt.attention_reason) == ("needs_attention", "amount_mismatch")
    return attempt


def something_for_everyone() -> None:
    """One row of each kind that needs a person, and one of each kind that does not."""
    mismatched_attempt()
    make_attempt(make_order(sku="OTHER"))  # paying: nobody's business yet
    order = make_paid_order(sku="PAID", price=10000)
    refund_request(order_id=order.pk, amount=6000, reason="ops")  # above 5000: approval
    failed = refund_request(order_id=order.pk, amount=1000, reason="ops")
    refund_apply_result(out_refund_no=failed.out_refund_no, outcome="failed", error="NOPE")
    run = StatementRun.objects.create(channel="alipay", statement_date=dt.date(2026, 1, 2))
    for kind, state in (("amount_mismatch", "open"), ("not_recorded", "healed")):
        Finding.objects.create(run=run, kind=kind, state=state, out_trade_no=f"OP{kind}")
    now = timezone.now()
    for status, error in (("pending", "webhook answered 500"), ("dead", "x"), ("pending", "")):
        OutboxEvent.objects.create(
            topic="test", payload={}, status=status, last_error=error, next_attempt_at=now
        )


def test_every_count_is_zero_when_nothing_waits_and_zero_is_shown() -> None:
    boss = User.objects.create_superuser("boss", password=PASSWORD)
    assert counts(boss) == dict.fromkeys(WATCHES, 0)
    page = logged_in(boss).get("/admin/").content.decode()
    assert "Needs a person" in page
    for key in WATCHES:
        assert f'data-watch="{key}"' in page


def test_each_count_is_the_number_of_rows_its_link_shows() -> None:
    something_for_everyone()
    boss = User.objects.create_superuser("boss", password=PASSWORD)
    assert counts(boss) == {
        "attempts-needs_attention": 1,
        "attempts-gateway_silent": 0,
        "attempts-amount_mismatch": 1,
        "attempts-contradiction": 0,
        "refunds-awaiting_approval": 1,
        "refunds-failed": 1,
        "findings-open": 1,
        "outbox-failing": 1,
        "outbox-dead": 1,
    }
    client = logged_in(boss)
    for group in needs_a_person(boss, NEEDS_A_PERSON):
        for tally in group.tallies:
            page = client.get(tally.url)
            assert page.status_code == 200, tally.url
            assert page.context["cl"].result_count == tally.count, tally.url


def test_only_the_counts_of_lists_the_user_may_view_are_shown() -> None:
    something_for_everyone()
    orders_only = staff("orders", "orders.view_order")
    assert counts(orders_only) == {}
    page = logged_in(orders_only).get("/admin/").content.decode()
    assert "Needs a person" in page and "data-watch" not in page
    refunds_only = staff("refunds", "refunds.view_refund")
    assert counts(refunds_only) == {"refunds-awaiting_approval": 1, "refunds-failed": 1}
    page = logged_in(refunds_only).get("/admin/").content.decode()
    assert 'data-watch="refunds-failed"' in page and "attempts-" not in page


def test_the_log_of_staff_actions_is_listed_read_only_for_those_allowed() -> None:
    boss = User.objects.create_superuser("boss", password=PASSWORD)
    product_type = ContentType.objects.get(app_label="shop", model="product")
    LogEntry.objects.create(
        user=boss,
        content_type=product_type,
        object_id="1",
        object_repr="Jasmine tea",
        action_flag=CHANGE,
        change_message="Changed stock.",
    )
    page = logged_in(boss).get("/admin/admin/logentry/")
    assert page.status_code == 200 and "Jasmine tea" in page.content.decode()
    assert logged_in(boss).get("/admin/admin/logentry/add/").status_code == 403
    entry = LogEntry.objects.get()
    assert logged_in(boss).post(f"/admin/admin/logentry/{entry.pk}/delete/").status_code == 403
    assert LogEntry.objects.count() == 1
    assert logged_in(staff("clerk")).get("/admin/admin/logentry/").status_code == 403
    reader = staff("reader", "admin.view_logentry")
    assert logged_in(reader).get("/admin/admin/logentry/?q=Jasmine").status_code == 200


def test_state_changes_are_searchable_and_can_only_be_viewed() -> None:
    attempt = mismatched_attempt()
    boss = User.objects.create_superuser("boss", password=PASSWORD)
    client = logged_in(boss)
    found = client.get("/admin/payments/statechange/", {"q": attempt.out_trade_no})
    assert found.status_code == 200
    assert found.context["cl"].result_count == StateChange.objects.filter(attempt=attempt).count()
    assert found.context["cl"].result_count >= 1
    none = client.get("/admin/payments/statechange/", {"q": "OPNOSUCHTRADE"})
    assert none.context["cl"].result_count == 0
    change = StateChange.objects.filter(attempt=attempt).first()
    assert change is not None
    assert client.get("/admin/payments/statechange/add/").status_code == 403
    view = client.get(f"/admin/payments/statechange/{change.pk}/change/")
    assert view.status_code == 200 and b'name="_save"' not in view.content
    forged = client.post(f"/admin/payments/statechange/{change.pk}/change/", {"cause": "x"})
    assert forged.status_code == 403
    assert client.post(f"/admin/payments/statechange/{change.pk}/delete/").status_code == 403
    change.refresh_from_db()
    assert change.cause == "test"


def test_admin_actions_name_the_staff_user_in_the_cause(settings: Any) -> None:
    LEDGER.reset()
    settings.PAYMENT_GATEWAYS = {
        channel: {"BACKEND": "tests.support.gateway_double.build", "CHANNEL": channel}
        for channel in ("alipay", "wechat")
    }
    boss = User.objects.create_superuser("boss", password=PASSWORD)
    client = logged_in(boss)
    attempt = make_attempt(make_order())
    client.post(
        "/admin/payments/paymentattempt/",
        {"action": "close_at_gateway", "_selected_action": [attempt.pk]},
    )
    closed = StateChange.objects.get(attempt=attempt, to_status="closed")
    assert closed.cause == "admin:boss"

    order = make_paid_order(sku="PAID", price=10000)
    refund = refund_request(order_id=order.pk, amount=1000, reason="ops")
    refund_apply_result(out_refund_no=refund.out_refund_no, outcome="failed", error="NOPE")
    client.post(
        "/admin/refunds/refund/", {"action": "retry_failed", "_selected_action": [refund.pk]}
    )
    resent = StateChange.objects.get(refund=refund, transition="refund_resend")
    assert resent.cause == "admin:boss"


def test_a_long_user_name_is_cut_to_fit_the_cause() -> None:
    request: Any = type("Request", (), {"user": User(username="o" * 150)})()
    cause = staff_cause(request)
    assert cause.startswith("admin:ooo") and len(cause) == 80


def test_orders_with_an_attempt_needing_attention_are_marked_and_filtered() -> None:
    flagged = mismatched_attempt().order
    make_attempt(make_order(sku="OTHER"))
    client = logged_in(User.objects.create_superuser("boss", password=PASSWORD))
    page = client.get("/admin/orders/order/", {"attention": "yes"})
    assert [o.pk for o in page.context["cl"].result_list] == [flagged.pk]
    assert client.get("/admin/orders/order/", {"attention": "no"}).context["cl"].result_count == 1
    everything = client.get("/admin/orders/order/").content.decode()
    assert everything.count('class="needs-attention"') == 1  # the attention column's sign


def test_money_is_shown_with_its_currency_and_typed_in_fen() -> None:
    something_for_everyone()
    client = logged_in(User.objects.create_superuser("boss", password=PASSWORD))
    assert "¥59.00" in client.get("/admin/payments/paymentattempt/").content.decode()
    assert "¥60.00" in client.get("/admin/refunds/refund/").content.decode()
    assert "¥100.00" in client.get("/admin/orders/order/").content.decode()
    product = client.get("/admin/shop/product/").content.decode()
    assert "¥59.00" in product
    tea = Product.objects.get(sku="TEA-1")
    edit = client.get(f"/admin/shop/product/{tea.pk}/change/").content.decode()
    assert "in fen (minor units): 5900 = ¥59.00" in edit


def test_times_are_shown_in_the_shop_time_zone_with_its_abbreviation(settings: Any) -> None:
    settings.TIME_ZONE = "Asia/Shanghai"
    instant = dt.datetime(2026, 12, 3, 14, 15, 30, tzinfo=dt.UTC)
    assert local_time(instant) == "2026-12-03 22:15 CST"
    assert local_time(instant, seconds=True) == "2026-12-03 22:15:30 CST"
    assert local_time(None) == "—"
    assert time_zone_shown() == {"name": "Asia/Shanghai", "abbreviation": "CST", "offset": "+08:00"}
    client = logged_in(User.objects.create_superuser("boss", password=PASSWORD))
    assert "Times in Asia/Shanghai (CST, UTC+08:00)" in client.get("/admin/").content.decode()
