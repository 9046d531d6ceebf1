"""Money actions need named permissions, in the API and in the admin; the second approver
cannot be sidestepped by splitting a refund; password guessing is throttled."""

from __future__ import annotations

import base64

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client

from orders.models import Order
from payments.models import GatewayEvent
from refunds.models import Refund
from refunds.services import refund_request
from tests.support.factories import make_paid_order

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-Staff-98765"


def paid_order(price: int = 10000) -> Order:
    return make_paid_order(sku=f"SKU-{price}", price=price)


def staff(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def basic(username: str, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def test_staff_without_the_refund_permission_gets_403_and_nothing_is_refunded() -> None:
    order = paid_order()
    staff("plain")
    staff("viewer", "view_refund", "view_order")
    url = f"/api/v1/orders/{order.public_id}/refunds"
    for username in ("plain", "viewer"):
        response = Client().post(
            url, {"amount": 100}, content_type="application/json", **basic(username)
        )
        assert response.status_code == 403, username
        assert response.json()["code"] == "permission_denied"
    assert Refund.objects.count() == 0
    staff("refunder", "request_refund")
    allowed = Client().post(
        url, {"amount": 100}, content_type="application/json", **basic("refunder")
    )
    assert allowed.status_code == 201


def test_admin_refund_form_needs_the_refund_permission() -> None:
    order = paid_order()
    staff("editor", "view_order", "change_order")
    client = Client()
    client.login(username="editor", password=PASSWORD)
    response = client.post(f"/admin/orders/order/{order.pk}/refund/", {"amount": 100})
    assert response.status_code == 302
    assert Refund.objects.count() == 0


def test_a_view_only_staff_user_cannot_run_the_money_actions() -> None:
    order = paid_order(price=119700)
    requester = staff("requester", "request_refund")
    refund = refund_request(order_id=order.pk, amount=119700, reason="ops", requested_by=requester)
    assert refund.approval_required
    staff("viewer", "view_refund", "view_paymentattempt", "view_order")
    client = Client()
    client.login(username="viewer", password=PASSWORD)
    changelist = client.get("/admin/refunds/refund/")
    assert changelist.status_code == 200
    assert b'value="approve"' not in changelist.content
    assert b'value="retry_failed"' not in changelist.content
    for action in ("approve", "retry_failed"):
        client.post("/admin/refunds/refund/", {"action": action, "_selected_action": [refund.pk]})
    refund.refresh_from_db()
    assert refund.approved_at is None and refund.status == "pending"
    attempt = order.paid_attempt
    for action in ("query_gateway_now", "close_at_gateway"):
        client.post(
            "/admin/payments/paymentattempt/", {"action": action, "_selected_action": [attempt.pk]}
        )
    assert not GatewayEvent.objects.filter(kind__in=["query", "close"]).exists()
    assert not LogEntry.objects.filter(user__username="viewer").exists()


def test_the_approver_needs_the_approve_permission_and_must_be_another_person() -> None:
    order = paid_order(price=119700)
    requester = staff("requester", "request_refund", "view_refund", "approve_refund")
    refund = refund_request(order_id=order.pk, amount=119700, reason="ops", requested_by=requester)
    own = Client()
    own.login(username="requester", password=PASSWORD)
    own.post("/admin/refunds/refund/", {"action": "approve", "_selected_action": [refund.pk]})
    refund.refresh_from_db()
    assert refund.approved_at is None  # the requester cannot approve their own refund
    staff("approver", "view_refund", "approve_refund")
    other = Client()
    other.login(username="approver", password=PASSWORD)
    other.post("/admin/refunds/refund/", {"action": "approve", "_selected_action": [refund.pk]})
    refund.refresh_from_db()
    assert refund.approved_by.username == "approver"


def test_splitting_a_refund_does_not_avoid_the_second_approver(settings) -> None:
    settings.REFUND_APPROVAL_THRESHOLD = 100000
    order = paid_order(price=119700)
    requester = staff("requester", "request_refund")
    first = refund_request(order_id=order.pk, amount=59850, reason="ops", requested_by=requester)
    second = refund_request(order_id=order.pk, amount=59850, reason="ops", requested_by=requester)
    assert first.approval_required is False  # on its own it is under the threshold
    assert second.approval_required is True  # together they are over it
    assert second.approved_at is None


def test_basic_auth_stops_answering_after_repeated_failures(settings) -> None:
    settings.LOGIN_FAILURE_LIMIT = 5
    order = paid_order()
    staff("refunder", "request_refund")
    url = f"/api/v1/orders/{order.public_id}/refunds"
    for _ in range(5):
        wrong = Client().post(
            url, {"amount": 100}, content_type="application/json", **basic("refunder", "guess")
        )
        assert wrong.status_code in (401, 403)
    locked = Client().post(
        url, {"amount": 100}, content_type="application/json", **basic("refunder")
    )
    assert locked.status_code == 429
    assert locked.json()["code"] == "rate_limited"
    # A forged X-Forwarded-For is not a new client.
    forged = Client().post(
        url,
        {"amount": 100},
        content_type="application/json",
        HTTP_X_FORWARDED_FOR="203.0.113.9",
        **basic("refunder"),
    )
    assert forged.status_code == 429
    assert Refund.objects.count() == 0


def test_admin_login_is_throttled_after_repeated_failures(settings) -> None:
    settings.LOGIN_FAILURE_LIMIT = 5
    staff("ops")
    for _ in range(5):
        page = Client().post("/admin/login/", {"username": "ops", "password": "guess"})
        assert page.status_code == 200  # the form again, with an error
    locked = Client().post(
        "/admin/login/", {"username": "ops", "password": PASSWORD, "next": "/admin/"}
    )
    assert locked.status_code == 429
    elsewhere = Client(REMOTE_ADDR="198.51.100.7").post(
        "/admin/login/", {"username": "ops", "password": PASSWORD}
    )
    assert elsewhere.status_code == 429  # locked per user name too, whatever the address
