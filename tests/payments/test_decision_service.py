"""The one state-deciding service, fed what a gateway said, in every order results can arrive."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from orders.models import Order
from payments.decision import Decision, attempt_apply_trade_status
from payments.gateways.base import TradeOutcome, TradeStatus
from payments.models import PaymentAttempt
from refunds.models import Refund
from shop.models import OutboxEvent, Product
from tests.support.factories import make_attempt, make_order


def paid(
    attempt: PaymentAttempt, amount: int | None = None, at: dt.datetime | None = None
) -> TradeStatus:
    return TradeStatus(
        outcome=TradeOutcome.PAID,
        out_trade_no=attempt.out_trade_no,
        gateway_trade_no="G" + attempt.out_trade_no,
        amount=attempt.amount if amount is None else amount,
        currency="CNY",
        paid_at=at,
    )


def status(attempt: PaymentAttempt, outcome: TradeOutcome) -> TradeStatus:
    return TradeStatus(outcome=outcome, out_trade_no=attempt.out_trade_no)


def apply(attempt: PaymentAttempt, result: TradeStatus) -> Decision:
    return attempt_apply_trade_status(attempt_id=attempt.pk, status=result, source="test")


@pytest.mark.django_db(transaction=True)
class TestDecisions:
    def test_success_marks_attempt_and_order_paid_together_and_writes_outbox(self) -> None:
        order = make_order()
        attempt = make_attempt(order)
        assert apply(attempt, paid(attempt)) is Decision.PAID
        order.refresh_from_db()
        attempt.refresh_from_db()
        assert order.status == "paid" and order.paid_attempt_id == attempt.pk
        assert attempt.status == "succeeded" and attempt.captured_amount == attempt.amount
        assert OutboxEvent.objects.filter(topic="order.paid").count() == 1

    def test_nth_delivery_changes_nothing(self) -> None:
        order = make_order()
        attempt = make_attempt(order)
        apply(attempt, paid(attempt))
        version = PaymentAttempt.objects.get(pk=attempt.pk).version
        for _ in range(3):
            assert apply(attempt, paid(attempt)) is Decision.UNCHANGED
        assert PaymentAttempt.objects.get(pk=attempt.pk).version == version
        assert OutboxEvent.objects.filter(topic="order.paid").count() == 1
        assert Refund.objects.count() == 0

    def test_second_capture_on_a_paid_order_records_one_duplicate_refund(self) -> None:
        order = make_order()
        first = make_attempt(order, channel="alipay")
        apply(first, paid(first))
        second = make_attempt(order, channel="wechat", status="closed")
        assert apply(second, paid(second)) is Decision.DUPLICATE
        assert apply(second, paid(second)) is Decision.UNCHANGED
        refund = Refund.objects.get()
        assert (refund.attempt_id, refund.reason, refund.amount) == (
            second.pk,
            "duplicate_payment",
            second.amount,
        )
        order.refresh_from_db()
        assert order.status == "paid" and order.paid_attempt_id == first.pk

    def test_capture_on_a_cancelled_order_records_an_order_closed_refund(self) -> None:
        order = make_order()
        attempt = make_attempt(order, status="closed")
        Order.objects.filter(pk=order.pk).update(
            status="closed", close_reason="cancelled", closed_at=timezone.now()
        )
        assert apply(attempt, paid(attempt)) is Decision.LATE
        assert Refund.objects.get().reason == "order_closed"
        assert Order.objects.get(pk=order.pk).status == "closed"

    def test_capture_after_expiry_within_grace_revives_the_order_when_stock_allows(self) -> None:
        order = make_order(stock=3, quantity=1)
        attempt = make_attempt(order, status="closed")
        Order.objects.filter(pk=order.pk).update(
            status="closed",
            close_reason="expired",
            closed_at=timezone.now(),
            expires_at=timezone.now() - dt.timedelta(seconds=10),
        )
        Product.objects.filter(sku="TEA-1").update(stock=3)  # stock was released at close
        assert apply(attempt, paid(attempt, at=timezone.now())) is Decision.REVIVED
        assert Order.objects.get(pk=order.pk).status == "paid"
        assert Product.objects.get(sku="TEA-1").stock == 2
        assert Refund.objects.count() == 0

    def test_capture_after_expiry_without_stock_is_refunded(self) -> None:
        order = make_order(stock=1, quantity=1)
        attempt = make_attempt(order, status="closed")
        Order.objects.filter(pk=order.pk).update(
            status="closed",
            close_reason="expired",
            expires_at=timezone.now() - dt.timedelta(seconds=10),
        )
        assert apply(attempt, paid(attempt)) is Decision.LATE
        assert Refund.objects.get().reason == "order_closed"

    def test_capture_long_after_the_deadline_on_an_open_order_closes_and_refunds(self) -> None:
        order = make_order(stock=5, quantity=2)
        attempt = make_attempt(order)
        Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - dt.timedelta(hours=2))
        assert apply(attempt, paid(attempt)) is Decision.LATE
        order.refresh_from_db()
        assert order.status == "closed"
        assert Product.objects.get(sku="TEA-1").stock == 5
        assert Refund.objects.get().reason == "order_closed"

    def test_state_only_moves_forward(self) -> None:
        order = make_order()
        attempt = make_attempt(order, status="created")
        assert apply(attempt, status(attempt, TradeOutcome.NOT_PAID)) is Decision.UPDATED
        assert PaymentAttempt.objects.get(pk=attempt.pk).status == "paying"
        apply(attempt, paid(attempt))
        for late in (
            TradeOutcome.CLOSED,
            TradeOutcome.NOT_PAID,
            TradeOutcome.NOT_FOUND,
            TradeOutcome.UNKNOWN,
        ):
            assert apply(attempt, status(attempt, late)) is Decision.UNCHANGED
        assert PaymentAttempt.objects.get(pk=attempt.pk).status == "succeeded"
        assert Order.objects.get(pk=order.pk).status == "paid"

    def test_closed_before_success_still_takes_the_money_into_account(self) -> None:
        order = make_order()
        attempt = make_attempt(order)
        apply(attempt, status(attempt, TradeOutcome.CLOSED))
        assert apply(attempt, status(attempt, TradeOutcome.NOT_PAID)) is Decision.UNCHANGED
        assert PaymentAttempt.objects.get(pk=attempt.pk).status == "closed"
        assert (
            apply(attempt, paid(attempt)) is Decision.PAID
        )  # the gateway is the truth about money
        assert Order.objects.get(pk=order.pk).status == "paid"

    def test_unknown_never_fails_anything(self) -> None:
        order = make_order()
        attempt = make_attempt(order)
        assert apply(attempt, status(attempt, TradeOutcome.UNKNOWN)) is Decision.UNCHANGED
        assert PaymentAttempt.objects.get(pk=attempt.pk).status == "paying"

    def test_amount_mismatch_is_set_aside_for_ops_not_paid(self) -> None:
        order = make_order()
        attempt = make_attempt(order)
        assert apply(attempt, paid(attempt, amount=1)) is Decision.MISMATCH
        assert PaymentAttempt.objects.get(pk=attempt.pk).status == "needs_attention"
        assert Order.objects.get(pk=order.pk).status == "unpaid"

    def test_database_holds_one_live_attempt_per_order(self) -> None:
        order = make_order()
        make_attempt(order, status="paying")
        with pytest.raises(IntegrityError):
            make_attempt(order, channel="wechat", status="created")

    @pytest.mark.parametrize("round_", range(5))
    def test_ten_concurrent_copies_of_one_success_make_one_transition(
        self, round_: int, settings
    ) -> None:
        settings.PAYMENT_LOCK_ENABLED = False  # the database alone must hold this
        order = make_order()
        attempt = make_attempt(order)
        barrier = threading.Barrier(10)

        def deliver(_: int) -> Decision:
            barrier.wait()
            try:
                return apply(attempt, paid(attempt))
            finally:
                connection.close()

        with ThreadPoolExecutor(10) as pool:
            decisions = list(pool.map(deliver, range(10)))
        assert decisions.count(Decision.PAID) == 1
        assert decisions.count(Decision.UNCHANGED) == 9
        assert OutboxEvent.objects.filter(topic="order.paid").count() == 1

    @pytest.mark.parametrize("round_", range(5))
    def test_two_attempts_succeeding_at_once_keep_one_and_refund_the_other(
        self, round_: int, settings
    ) -> None:
        settings.PAYMENT_LOCK_ENABLED = False
        order = make_order()
        a = make_attempt(order, channel="alipay", status="closed")
        b = make_attempt(order, channel="wechat", status="paying")
        barrier = threading.Barrier(2)

        def deliver(attempt: PaymentAttempt) -> Decision:
            barrier.wait()
            try:
                return apply(attempt, paid(attempt))
            finally:
                connection.close()

        with ThreadPoolExecutor(2) as pool:
            decisions = sorted(pool.map(deliver, [a, b]))
        assert decisions == sorted([Decision.PAID, Decision.DUPLICATE])
        order.refresh_from_db()
        refund = Refund.objects.get()
        assert refund.reason == "duplicate_payment"
        assert refund.attempt_id != order.paid_attempt_id
