"""The decision tables, case by case: forward only whatever order results arrive in, the
prepay-rejection, lock-order and refund-lock bugs, "not paid" kept payable, and the audit trail."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from orders.locks import OrderBusy, lock_order_row, order_lock
from orders.models import Order
from payments.apply_pay import payment_apply
from payments.decision import (
    ATTEMPT_RULES,
    Decision,
    attempt_after_poll,
    attempt_apply_trade_status,
)
from payments.gateways.base import TradeOutcome, TradeStatus
from payments.models import PaymentAttempt, StateChange
from payments.selectors import PageState, status_body
from refunds.models import Refund
from refunds.services import refund_apply_result, refund_request
from shop.errors import ApplicationError
from tests.support.factories import make_attempt, make_order
from tests.support.gateway_double import LEDGER

pytestmark = pytest.mark.django_db(transaction=True)


def paid(attempt: PaymentAttempt) -> TradeStatus:
    return TradeStatus(
        outcome=TradeOutcome.PAID,
        out_trade_no=attempt.out_trade_no,
        amount=attempt.amount,
        currency=attempt.currency,
    )


def said(attempt: PaymentAttempt, outcome: TradeOutcome) -> TradeStatus:
    return TradeStatus(outcome=outcome, out_trade_no=attempt.out_trade_no)


def apply(attempt: PaymentAttempt, status: TradeStatus, source: str = "test") -> Decision:
    return attempt_apply_trade_status(attempt_id=attempt.pk, status=status, source=source)


@pytest.fixture
def gateway_double(settings: Any) -> Any:
    LEDGER.reset()
    settings.PAYMENT_GATEWAYS = {
        channel: {"BACKEND": "tests.support.gateway_double.build", "CHANNEL": channel}
        for channel in ("alipay", "wechat")
    }
    settings.TASK_FOLLOW_UPS_ENABLED = False
    return LEDGER


# --- forward only ---------------------------------------------------------------------------


def test_a_query_answered_before_the_capture_but_arriving_after_it_changes_nothing() -> None:
    attempt = make_attempt(make_order())
    assert apply(attempt, paid(attempt)) is Decision.PAID
    for outcome in (TradeOutcome.NOT_PAID, TradeOutcome.NOT_FOUND, TradeOutcome.UNKNOWN):
        assert apply(attempt, said(attempt, outcome), "poll") is Decision.UNCHANGED
    fresh = PaymentAttempt.objects.get(pk=attempt.pk)
    assert fresh.status == "succeeded" and Order.objects.get(pk=attempt.order_id).status == "paid"


def test_a_close_result_after_a_success_changes_nothing() -> None:
    attempt = make_attempt(make_order())
    apply(attempt, paid(attempt))
    assert apply(attempt, said(attempt, TradeOutcome.CLOSED), "close") is Decision.UNCHANGED
    assert PaymentAttempt.objects.get(pk=attempt.pk).status == "succeeded"


def test_a_refund_result_before_the_capture_redelivery_keeps_the_order_refunded() -> None:
    """The refund's notification overtakes a re-delivery of the capture's: the order stays
    refunded (never back to paid), and the re-delivery records no second refund."""
    order = make_order()
    attempt = make_attempt(order)
    apply(attempt, paid(attempt))
    refund = refund_request(order_id=order.pk, amount=order.total_amount, reason="ops")
    assert refund_apply_result(out_refund_no=refund.out_refund_no, outcome="succeeded")
    assert Order.objects.get(pk=order.pk).status == "refunded"
    assert apply(attempt, paid(attempt), "notification") is Decision.UNCHANGED
    assert Order.objects.get(pk=order.pk).status == "refunded"
    assert Refund.objects.count() == 1
    # and a late "failed" for the same refund cannot undo its success
    assert not refund_apply_result(out_refund_no=refund.out_refund_no, outcome="failed")
    assert Refund.objects.get().status == "succeeded"


def test_a_duplicate_capture_refunded_then_redelivered_leaves_one_refund() -> None:
    order = make_order()
    first = make_attempt(order, channel="alipay")
    apply(first, paid(first))
    second = make_attempt(order, channel="wechat", status="closed")
    assert apply(second, paid(second)) is Decision.DUPLICATE
    refund = Refund.objects.get(attempt=second)
    refund_apply_result(out_refund_no=refund.out_refund_no, outcome="succeeded")
    assert apply(second, paid(second)) is Decision.UNCHANGED
    assert Refund.objects.filter(attempt=second).count() == 1
    assert Order.objects.get(pk=order.pk).status == "paid"


def test_no_rule_leaves_succeeded() -> None:
    assert not [key for key in ATTEMPT_RULES if key[0] == "succeeded"]


# --- the bugs ---------------------------------------------------------------------------------


def test_a_rejected_prepay_leaves_the_attempt_failed_and_unpolled(gateway_double: Any) -> None:
    order = make_order()
    gateway_double.next_prepay = "rejected"
    with pytest.raises(ApplicationError) as raised:
        payment_apply(order_id=order.pk, channel="wechat", client="pc")
    assert raised.value.code == "payment_rejected"
    attempt = PaymentAttempt.objects.get(order=order)
    assert (attempt.status, attempt.next_poll_at) == ("failed", None)
    assert attempt.last_error == "INVALID_REQUEST"
    assert StateChange.objects.filter(
        attempt=attempt, from_status="created", to_status="failed", transition="attempt_reject"
    ).exists()
    # the shopper can pay another way at once
    gateway_double.next_prepay = "created"
    again = payment_apply(order_id=order.pk, channel="alipay", client="pc")
    assert again.created and again.attempt.status == "paying"


@pytest.mark.parametrize("round_", range(5))
def test_poll_bookkeeping_locks_the_order_before_the_attempt(round_: int) -> None:
    """A transaction that locks order then attempt (the written order) and the poll's
    bookkeeping must never deadlock: the poll waits for the order row first."""
    attempt = make_attempt(make_order())
    holding = threading.Event()
    errors: list[BaseException] = []

    def order_then_attempt() -> None:
        try:
            with transaction.atomic():
                lock_order_row(attempt.order_id)
                holding.set()
                time.sleep(0.3)
                PaymentAttempt.objects.select_for_update().get(pk=attempt.pk)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    def poll_bookkeeping() -> None:
        try:
            holding.wait(5)
            attempt_after_poll(attempt_id=attempt.pk, outcome=TradeOutcome.NOT_PAID)
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=order_then_attempt),
        threading.Thread(target=poll_bookkeeping),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert PaymentAttempt.objects.get(pk=attempt.pk).poll_step == 1


def test_refunds_enter_through_the_order_lock(settings: Any) -> None:
    settings.PAYMENT_LOCK_WAIT_SECONDS = 0.3
    order = make_order()
    attempt = make_attempt(order)
    apply(attempt, paid(attempt))
    refund = refund_request(order_id=order.pk, amount=100, reason="ops")
    outcome: list[object] = []

    def while_locked() -> None:
        for call in (
            lambda: refund_request(order_id=order.pk, amount=100, reason="ops"),
            lambda: refund_apply_result(out_refund_no=refund.out_refund_no, outcome="succeeded"),
        ):
            try:
                outcome.append(call())
            except OrderBusy as busy:
                outcome.append(busy)
        connection.close()

    with order_lock(order.pk):
        worker = threading.Thread(target=while_locked)
        worker.start()
        worker.join(10)
    assert [type(o) for o in outcome] == [OrderBusy, OrderBusy]
    assert Refund.objects.count() == 1 and Refund.objects.get().status == "pending"


# --- not paid stays payable -----------------------------------------------------------------


def _run_out_the_schedule(attempt: PaymentAttempt, outcome: TradeOutcome, settings: Any) -> None:
    for _ in range(len(settings.PAYMENT_POLL_SCHEDULE) + 2):
        apply(attempt, said(attempt, outcome), "poll")
        attempt_after_poll(attempt_id=attempt.pk, outcome=outcome)


def test_an_open_unpaid_trade_stays_live_until_the_deadline(settings: Any) -> None:
    order = make_order()
    attempt = make_attempt(order)
    _run_out_the_schedule(attempt, TradeOutcome.NOT_PAID, settings)
    fresh = PaymentAttempt.objects.get(pk=attempt.pk)
    assert (fresh.status, fresh.attention_reason) == ("paying", "")
    assert fresh.next_poll_at is not None and fresh.next_poll_at <= order.expires_at
    assert fresh.next_poll_at > timezone.now() + dt.timedelta(
        seconds=settings.PAYMENT_POLL_SCHEDULE[-1]
    )
    body = status_body(Order.objects.get(pk=order.pk))
    assert body["state"] == PageState.AWAITING and not body["confirming"]


def test_a_gateway_silent_through_the_schedule_needs_a_person_and_heals(settings: Any) -> None:
    order = make_order()
    attempt = make_attempt(order)
    _run_out_the_schedule(attempt, TradeOutcome.UNKNOWN, settings)
    fresh = PaymentAttempt.objects.get(pk=attempt.pk)
    assert (fresh.status, fresh.attention_reason) == ("needs_attention", "gateway_silent")
    assert status_body(Order.objects.get(pk=order.pk))["confirming"]
    # the gateway answers again: open and unpaid, so the shopper may go on paying
    assert apply(attempt, said(attempt, TradeOutcome.NOT_PAID), "poll") is Decision.UPDATED
    fresh = PaymentAttempt.objects.get(pk=attempt.pk)
    assert (fresh.status, fresh.attention_reason) == ("paying", "")


def test_confirming_only_when_we_do_not_know() -> None:
    order = make_order()
    attempt = make_attempt(order)
    assert status_body(order)["state"] == PageState.AWAITING
    apply(attempt, said(attempt, TradeOutcome.UNKNOWN), "poll")
    assert status_body(order)["state"] == PageState.CONFIRMING  # the last answer was a timeout
    apply(attempt, said(attempt, TradeOutcome.NOT_PAID), "poll")
    assert status_body(order)["state"] == PageState.AWAITING
    assert (
        status_body(order, returned=True)["state"] == PageState.CONFIRMING
    )  # back from the gateway


def test_a_mismatch_stays_with_a_person_even_when_the_gateway_says_not_paid() -> None:
    attempt = make_attempt(make_order())
    wrong = TradeStatus(
        outcome=TradeOutcome.PAID, out_trade_no=attempt.out_trade_no, amount=1, currency="CNY"
    )
    assert apply(attempt, wrong) is Decision.MISMATCH
    assert apply(attempt, said(attempt, TradeOutcome.NOT_PAID)) is Decision.UNCHANGED
    fresh = PaymentAttempt.objects.get(pk=attempt.pk)
    assert (fresh.status, fresh.attention_reason) == ("needs_attention", "amount_mismatch")


# --- the audit trail ------------------------------------------------------------------------


def test_every_transition_of_a_duplicate_payment_is_audited_with_its_cause() -> None:
    order = make_order()
    first = make_attempt(order, channel="alipay")
    apply(first, paid(first), "notification")
    second = make_attempt(order, channel="wechat", status="closed")
    apply(second, paid(second), "poll")
    rows = list(
        StateChange.objects.filter(order=order)
        .order_by("id")
        .values_list("entity", "from_status", "to_status", "cause")
    )
    assert rows == [
        ("attempt", "paying", "succeeded", "notification"),
        ("order", "unpaid", "paid", "notification"),
        ("attempt", "closed", "succeeded", "poll"),
        ("refund", "-", "pending", "poll"),
    ]


def test_the_readme_shows_every_transition_of_the_tables() -> None:
    from pathlib import Path

    from payments.decision import ORDER_CAPTURE_RULES, ORDER_RULES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rules = [*ATTEMPT_RULES.values(), *ORDER_CAPTURE_RULES.values(), *ORDER_RULES.values()]
    missing = {r.transition.__name__ for r in rules} - {
        name for name in {r.transition.__name__ for r in rules} if f"`{name}`" in readme
    }
    assert missing == set()
