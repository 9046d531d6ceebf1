"""The expiry sweep: orders that need no gateway are closed in bulk, exactly as the one-by-one
close closes them (audit row, outbox event, stock back); orders with an unsettled attempt still
go to the gateway first; held rows are skipped, and two sweeps at once close each order once."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from orders.locks import lock_order_row
from orders.models import Order
from payments.decision import order_close_unpaid, orders_close_expired_bulk
from payments.expiry import expire_orders_sweep
from payments.models import PaymentAttempt, StateChange
from shop.models import OutboxEvent, Product
from tests.support.factories import make_attempt, make_order, make_paid_order
from tests.support.gateway_double import LEDGER

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def gateway_double(settings: Any) -> Any:
    LEDGER.reset()
    settings.PAYMENT_GATEWAYS = {
        channel: {"BACKEND": "tests.support.gateway_double.build", "CHANNEL": channel}
        for channel in ("alipay", "wechat")
    }
    settings.TASK_FOLLOW_UPS_ENABLED = False
    return LEDGER


def expired(order: Order) -> Order:
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    return Order.objects.get(pk=order.pk)


def closing_record(order: Order) -> dict[str, Any]:
    """What a close leaves behind for one order, without what differs by order or by moment."""
    order.refresh_from_db()
    audit = StateChange.objects.get(order=order)
    event = OutboxEvent.objects.get(topic="order.closed", payload__order_id=order.public_id)
    return {
        "status": order.status,
        "close_reason": order.close_reason,
        "closed": order.closed_at is not None,
        "audit": (
            audit.entity,
            audit.from_status,
            audit.to_status,
            audit.transition,
            audit.cause,
            audit.detail,
        ),
        "audit_attempt_is_latest": audit.attempt_id
        == PaymentAttempt.objects.filter(order=order)
        .order_by("-created_at")
        .values_list("pk", flat=True)
        .first(),
        "event": sorted(event.payload),
        "event_reason": event.payload["reason"],
        "event_closed_at": event.payload["closed_at"] == order.closed_at.isoformat(),  # type: ignore[union-attr]
    }


@pytest.mark.parametrize("with_closed_attempt", [False, True])
def test_the_bulk_close_records_what_the_one_by_one_close_records(
    with_closed_attempt: bool,
) -> None:
    one, other = expired(make_order("TEA-1", 2)), expired(make_order("TEA-1", 3))
    if with_closed_attempt:
        make_attempt(one, status="closed")
        make_attempt(other, status="closed")
    assert Product.objects.get(sku="TEA-1").stock == 95
    assert order_close_unpaid(order_id=one.pk, reason="expired")
    assert orders_close_expired_bulk(limit=10) == [other.pk]
    assert closing_record(one) == closing_record(other)
    assert closing_record(other)["status"] == "closed"
    assert Product.objects.get(sku="TEA-1").stock == 100


def test_the_bulk_close_releases_the_stock_of_every_line() -> None:
    orders = [expired(make_order(sku, quantity)) for sku, quantity in [("A", 1), ("B", 2)] * 3]
    assert sorted(orders_close_expired_bulk(limit=10)) == sorted(o.pk for o in orders)
    assert dict(Product.objects.values_list("sku", "stock")) == {"A": 100, "B": 100}
    assert StateChange.objects.filter(transition="order_close").count() == 6
    assert OutboxEvent.objects.filter(topic="order.closed").count() == 6


def test_the_bulk_close_leaves_what_it_must_not_close() -> None:
    live = expired(make_order())
    make_attempt(live, status="paying")
    set_aside = expired(make_order())
    make_attempt(set_aside, status="needs_attention")
    not_yet = make_order()
    paid = expired(make_paid_order())
    closable = expired(make_order())
    assert orders_close_expired_bulk(limit=10) == [closable.pk]
    for order in (live, set_aside, not_yet):
        assert Order.objects.get(pk=order.pk).status == "unpaid"
    assert Order.objects.get(pk=paid.pk).status == "paid"
    assert StateChange.objects.filter(transition="order_close").count() == 1


def test_the_bulk_close_takes_at_most_its_limit_oldest_deadline_first() -> None:
    orders = [expired(make_order()) for _ in range(3)]
    Order.objects.filter(pk=orders[0].pk).update(expires_at=timezone.now())  # the newest
    assert sorted(orders_close_expired_bulk(limit=2)) == sorted([orders[1].pk, orders[2].pk])
    assert orders_close_expired_bulk(limit=2) == [orders[0].pk]
    assert orders_close_expired_bulk(limit=2) == []


def test_the_bulk_close_skips_an_order_someone_holds() -> None:
    held, free = expired(make_order()), expired(make_order())
    locked, release = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                lock_order_row(held.pk)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert locked.wait(10)
        assert orders_close_expired_bulk(limit=10) == [free.pk]
    finally:
        release.set()
        thread.join()
    assert orders_close_expired_bulk(limit=10) == [held.pk]


def test_two_bulk_closes_at_once_close_each_order_once() -> None:
    orders = [expired(make_order()) for _ in range(30)]
    closed: list[list[int]] = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        try:
            barrier.wait()
            while ids := orders_close_expired_bulk(limit=4):
                closed.append(ids)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [pk for ids in closed for pk in ids]
    assert sorted(flat) == sorted(o.pk for o in orders)
    assert StateChange.objects.filter(transition="order_close").count() == 30
    assert OutboxEvent.objects.filter(topic="order.closed").count() == 30
    assert Product.objects.get(sku="TEA-1").stock == 100


def test_the_sweep_closes_a_live_attempt_at_the_gateway_before_its_order(
    gateway_double: Any,
) -> None:
    with_attempt, without = expired(make_order()), expired(make_order())
    attempt = make_attempt(with_attempt, status="paying")
    assert expire_orders_sweep() == 2
    assert PaymentAttempt.objects.get(pk=attempt.pk).status == "closed"
    assert Order.objects.get(pk=with_attempt.pk).status == "closed"
    assert Order.objects.get(pk=without.pk).status == "closed"
    changes = list(
        StateChange.objects.filter(order=with_attempt)
        .order_by("id")
        .values_list("entity", "to_status")
    )
    assert changes == [("attempt", "closed"), ("order", "closed")]


def test_an_unreachable_gateway_keeps_its_order_open_and_holds_up_no_other(
    gateway_double: Any, settings: Any
) -> None:
    settings.SWEEP_BATCH_SIZE = 2
    stuck = [expired(make_order()) for _ in range(2)]
    for order in stuck:
        make_attempt(order, status="paying")
    others = [expired(make_order()) for _ in range(3)]
    gateway_double.silent = True
    assert expire_orders_sweep() == 2
    assert expire_orders_sweep() == 1
    assert expire_orders_sweep() == 0
    assert {o.status for o in Order.objects.filter(pk__in=[o.pk for o in others])} == {"closed"}
    assert {o.status for o in Order.objects.filter(pk__in=[o.pk for o in stuck])} == {"unpaid"}
    gateway_double.silent = False
    assert expire_orders_sweep() == 2
    assert not Order.objects.filter(status="unpaid").exists()
