"""Stateful property tests of the payment state machine (hypothesis).

Random interleavings of what shoppers and gateways do to one order — apply-pay on any channel
and client, prepays opened / rejected / hung, payments at the gateway, callbacks delivered
once or several times, stale and reordered answers, polls, closes (some ignored), silence,
expiry and cancel, refunds that succeed or fail, ops refunds, sweeps — applied through the real
services on the real PostgreSQL and Redis, with an in-process gateway double as the ground
truth. After every step: at most one live attempt, states only move forward, refunded ≤
captured, one automatic refund per cause, nothing marked captured that the gateway did not
capture. Once quiet: captured − refunded at the gateway = the order's total (less what ops
refunded) if it is paid, else 0.

Seeded and bounded here; a longer run:
    PROPERTY_EXAMPLES=2000 PROPERTY_STEPS=40 .venv/bin/pytest tests/payments/test_state_machine_properties.py
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db.models import Count, Q, Sum
from django.utils import timezone
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from orders.locks import order_lock
from orders.models import CloseReason, Order
from payments.apply_pay import payment_apply
from payments.decision import attempt_after_poll, attempt_apply_trade_status
from payments.gateways.base import TradeOutcome, TradeStatus
from payments.models import LIVE_STATUSES, UNSETTLED_STATUSES, PaymentAttempt
from payments.polling import attempt_poll
from payments.services import (
    attempt_close_at_gateway,
    attempt_query_and_apply,
    order_cancel_or_expire,
)
from refunds.models import AUTOMATIC_REASONS, Refund
from refunds.services import refund_apply_result, refund_execute, refund_request, refund_retry
from refunds.sweeps import refund_sweep
from shop.errors import ApplicationError
from tests.support.factories import make_order
from tests.support.gateway_double import LEDGER, trade_status

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "120"))
STEPS = int(os.environ.get("PROPERTY_STEPS", "25"))

# Forward, per the decision tables: where each state may go next.
ATTEMPT_FORWARD = {
    "created": {"paying", "failed", "succeeded", "closed", "needs_attention"},
    "paying": {"succeeded", "closed", "needs_attention"},
    "needs_attention": {"paying", "succeeded", "closed"},  # paying: the silent gateway answered
    "closed": {"succeeded", "needs_attention"},  # a capture on a closed trade
    "failed": {"succeeded", "needs_attention"},
    "succeeded": set(),
}
ORDER_FORWARD = {
    "unpaid": {"paid", "closed"},
    "closed": {"paid"},  # revived within grace
    "paid": {"partially_refunded", "refunded"},
    "partially_refunded": {"refunded"},
    "refunded": set(),
}
REFUND_FORWARD = {"pending": {"succeeded", "failed"}, "failed": {"pending"}, "succeeded": set()}


def _reachable(table: dict[str, set[str]]) -> dict[str, set[str]]:
    """Every state reachable by forward moves: one step of the world may make several (a failed
    refund is retried and succeeds at once: failed → pending → succeeded)."""
    closure = {state: set(targets) for state, targets in table.items()}
    changed = True
    while changed:
        changed = False
        for targets in closure.values():
            more = set().union(*(closure[t] for t in targets)) - targets
            if more:
                targets |= more
                changed = True
    return closure


# Attempts and orders are held to single moves (their tables already list what one step may
# do); a refund may be failed and retried to success within one step.
REFUND_REACHABLE = _reachable(REFUND_FORWARD)

attempt_index = st.integers(min_value=0, max_value=4)


class PaymentWorld(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        LEDGER.reset()
        self.order = make_order("PROP-1", stock=10**9)
        self.seen: dict[tuple[str, int], str] = {}

    # --- helpers --------------------------------------------------------------------------

    def attempts(self) -> list[PaymentAttempt]:
        return list(PaymentAttempt.objects.filter(order_id=self.order.pk).order_by("pk"))

    def pick(self, index: int) -> PaymentAttempt | None:
        attempts = self.attempts()
        return attempts[index % len(attempts)] if attempts else None

    def fresh_order(self) -> Order:
        return Order.objects.get(pk=self.order.pk)

    def deliver(self, attempt: PaymentAttempt, status: TradeStatus, source: str) -> None:
        with order_lock(self.order.pk):
            attempt_apply_trade_status(attempt_id=attempt.pk, status=status, source=source)

    def has_attempts(self) -> bool:
        return PaymentAttempt.objects.filter(order_id=self.order.pk).exists()

    # --- shoppers ---------------------------------------------------------------------------

    @initialize(
        channel=st.sampled_from(["alipay", "wechat"]), client=st.sampled_from(["pc", "wap"])
    )
    def shopper_starts_paying(self, channel: str, client: str) -> None:
        payment_apply(order_id=self.order.pk, channel=channel, client=client)

    @rule(
        channel=st.sampled_from(["alipay", "wechat"]),
        client=st.sampled_from(["pc", "wap", "app"]),
        prepay=st.sampled_from(["created", "created", "created", "rejected", "unknown", "lost"]),
    )
    def apply_pay(self, channel: str, client: str, prepay: str) -> None:
        LEDGER.next_prepay = prepay
        try:
            payment_apply(order_id=self.order.pk, channel=channel, client=client)
        except ApplicationError:
            pass  # paid, closed, rejected, in progress: the shopper is told; nothing to check
        finally:
            LEDGER.next_prepay = "created"

    @precondition(lambda self: self.has_attempts())
    @rule(index=attempt_index)
    def shopper_pays_at_the_gateway(self, index: int) -> None:
        attempt = self.pick(index)
        if attempt is not None:
            LEDGER.pay(attempt.out_trade_no, timezone.now())

    @rule()
    def shopper_cancels(self) -> None:
        if self.fresh_order().status == "unpaid":
            with contextlib.suppress(ApplicationError):
                order_cancel_or_expire(order_id=self.order.pk, reason=CloseReason.CANCELLED)

    @rule(long_ago=st.booleans())
    def order_expires(self, long_ago: bool) -> None:
        """The clock passes the deadline (by a second, or by an hour: past any grace)."""
        past = dt.timedelta(hours=1) if long_ago else dt.timedelta(seconds=1)
        Order.objects.filter(pk=self.order.pk, expires_at__gt=timezone.now() - past).update(
            expires_at=timezone.now() - past
        )
        if self.fresh_order().status == "unpaid":
            with contextlib.suppress(ApplicationError):
                order_cancel_or_expire(order_id=self.order.pk, reason=CloseReason.EXPIRED)

    # --- gateways ---------------------------------------------------------------------------

    @precondition(lambda self: self.has_attempts())
    @rule(index=attempt_index, copies=st.integers(min_value=1, max_value=3))
    def callback_delivered(self, index: int, copies: int) -> None:
        attempt = self.pick(index)
        if attempt is None:
            return
        status = trade_status(attempt.out_trade_no)
        if status.outcome is TradeOutcome.PAID:
            for _ in range(copies):
                self.deliver(attempt, status, "notification")

    @precondition(lambda self: self.has_attempts())
    @rule(index=attempt_index, age=st.integers(min_value=0, max_value=3))
    def stale_answer_arrives(self, index: int, age: int) -> None:
        """An answer that was true once (a query answered before a capture, a close result),
        or a timeout, arriving after whatever happened since."""
        attempt = self.pick(index)
        if attempt is None:
            return
        trade = LEDGER.trades.get(attempt.out_trade_no)
        # Answers that are no longer true (the last one is the truth), or a timeout.
        stale = [*(trade.history[:-1] if trade else [TradeOutcome.NOT_FOUND]), TradeOutcome.UNKNOWN]
        outcome = stale[age % len(stale)]
        status = TradeStatus(outcome=outcome, out_trade_no=attempt.out_trade_no)
        self.deliver(attempt, status, "poll")

    @precondition(lambda self: self.has_attempts())
    @rule(index=attempt_index, notified=st.booleans())
    def gateway_ignores_a_close_and_the_shopper_pays(self, index: int, notified: bool) -> None:
        """The close answers "closed", the trade stays payable, and the shopper pays it."""
        attempt = self.pick(index)
        if attempt is not None and attempt.status in UNSETTLED_STATUSES:
            LEDGER.ignore_next_close = True
            with order_lock(self.order.pk):
                attempt_close_at_gateway(attempt=attempt, source="admin:ops")
            LEDGER.ignore_next_close = False
            if LEDGER.pay(attempt.out_trade_no, timezone.now()) and notified:
                self.deliver(attempt, trade_status(attempt.out_trade_no), "notification")

    @precondition(lambda self: self.has_attempts())
    @rule(index=attempt_index)
    def gateway_reports_another_amount(self, index: int) -> None:
        attempt = self.pick(index)
        if attempt is not None:
            status = TradeStatus(
                outcome=TradeOutcome.PAID,
                out_trade_no=attempt.out_trade_no,
                amount=attempt.amount + 1,
                currency=attempt.currency,
            )
            self.deliver(attempt, status, "notification")

    @precondition(lambda self: self.has_attempts())
    @rule(index=attempt_index)
    def poll(self, index: int) -> None:
        attempt = self.pick(index)
        if attempt is not None:
            attempt_poll(attempt_id=attempt.pk, only_if_due=False)

    @precondition(lambda self: self.has_attempts())
    @rule(index=attempt_index)
    def poll_schedule_runs_out_in_silence(self, index: int) -> None:
        attempt = self.pick(index)
        if attempt is not None:
            for _ in range(len(django_settings.PAYMENT_POLL_SCHEDULE) + 1):
                with order_lock(self.order.pk):
                    attempt_after_poll(attempt_id=attempt.pk, outcome=TradeOutcome.UNKNOWN)

    @rule(silent=st.booleans())
    def gateway_goes_silent_or_answers(self, silent: bool) -> None:
        LEDGER.silent = silent

    @rule()
    def gateway_will_ignore_the_next_close(self) -> None:
        LEDGER.ignore_next_close = True

    @precondition(lambda self: self.has_attempts())
    @rule(index=attempt_index)
    def ops_close_at_gateway(self, index: int) -> None:
        attempt = self.pick(index)
        if attempt is not None:
            with order_lock(self.order.pk):
                attempt_close_at_gateway(attempt=attempt, source="admin:ops")

    # --- refunds ----------------------------------------------------------------------------

    @rule()
    def refunds_sent(self) -> None:
        for refund in Refund.objects.filter(order_id=self.order.pk, status="pending"):
            refund_execute(refund_id=refund.pk)

    @rule(index=st.integers(min_value=0, max_value=4), succeeds=st.booleans())
    def gateway_settles_a_refund(self, index: int, succeeds: bool) -> None:
        pending = [
            (trade, refund)
            for trade in LEDGER.trades.values()
            for refund in trade.refunds.values()
            if refund.status == "pending"
        ]
        if not pending:
            return
        _trade, refund = pending[index % len(pending)]
        refund.status = "succeeded" if succeeds else "failed"
        refund_apply_result(
            out_refund_no=refund.out_refund_no,
            outcome=refund.status,
            amount=refund.amount,
            cause="notification",
        )

    @rule(quarters=st.integers(min_value=1, max_value=4))
    def ops_refund(self, quarters: int) -> None:
        order = self.fresh_order()
        if order.is_paid:
            with contextlib.suppress(ApplicationError):
                refund_request(
                    order_id=order.pk, amount=order.total_amount * quarters // 4, reason="ops"
                )

    @rule()
    def refund_sweep_runs(self) -> None:
        refund_sweep()

    # --- after every step -------------------------------------------------------------------

    def _forward(self, kind: str, pk: int, status: str, table: dict[str, set[str]]) -> None:
        before = self.seen.get((kind, pk))
        if before is not None and before != status:
            assert status in table[before], f"{kind} {pk} moved back: {before} -> {status}"
        self.seen[(kind, pk)] = status

    @invariant()
    def the_books_hold(self) -> None:
        attempts = self.attempts()
        assert sum(a.status in LIVE_STATUSES for a in attempts) <= 1, "two live attempts"
        order = self.fresh_order()
        self._forward("order", order.pk, order.status, ORDER_FORWARD)
        if order.is_paid:
            assert order.paid_attempt is not None and order.paid_attempt.status == "succeeded"
        for attempt in attempts:
            self._forward("attempt", attempt.pk, attempt.status, ATTEMPT_FORWARD)
            if attempt.status == "succeeded":
                trade = LEDGER.trades.get(attempt.out_trade_no)
                assert trade is not None and trade.status == "paid", "capture made up"
            committed = (
                Refund.objects.filter(attempt=attempt)
                .exclude(status="failed")
                .aggregate(total=Sum("amount"))["total"]
                or 0
            )
            assert committed <= attempt.captured_amount, "over-refund"
        for refund in Refund.objects.filter(order_id=order.pk):
            self._forward("refund", refund.pk, refund.status, REFUND_REACHABLE)
        per_cause = (
            Refund.objects.filter(order_id=order.pk, reason__in=AUTOMATIC_REASONS)
            .values("attempt_id", "reason")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
        )
        assert not per_cause.exists(), "two automatic refunds for one cause"

    # --- once quiet -------------------------------------------------------------------------

    def quiesce(self) -> None:
        """What polls, sweeps, gateways and ops do once the world is quiet."""
        LEDGER.silent = False
        LEDGER.ignore_next_close = False
        for _ in range(5):
            for attempt in self.attempts():
                if attempt.status != "succeeded":
                    with order_lock(self.order.pk):
                        attempt_query_and_apply(attempt=attempt, source="poll")
            if self.fresh_order().status != "unpaid":
                for attempt in self.attempts():
                    if attempt.status in UNSETTLED_STATUSES:
                        with order_lock(self.order.pk):
                            attempt_close_at_gateway(attempt=attempt, source="poll_leftover")
            refund_sweep()
            self.refunds_sent()
            for trade in LEDGER.trades.values():
                for refund in trade.refunds.values():
                    if refund.status == "pending":
                        refund.status = "succeeded"
                        refund_apply_result(
                            out_refund_no=refund.out_refund_no,
                            outcome="succeeded",
                            amount=refund.amount,
                        )
            for refund in Refund.objects.filter(
                order_id=self.order.pk, status="failed", reason__in=AUTOMATIC_REASONS
            ):
                refund_retry(refund_id=refund.pk)  # what ops do with a failed automatic refund

    def teardown(self) -> None:
        self.quiesce()
        self.the_books_hold()
        order = self.fresh_order()
        trades = [
            LEDGER.trades[a.out_trade_no]
            for a in self.attempts()
            if a.out_trade_no in LEDGER.trades
        ]
        net = sum(t.captured - t.refunded for t in trades)
        ops_refunded = (
            Refund.objects.filter(order_id=order.pk, status="succeeded")
            .filter(~Q(reason__in=AUTOMATIC_REASONS))
            .aggregate(total=Sum("amount"))["total"]
            or 0
        )
        expected = order.total_amount - ops_refunded if order.is_paid else 0
        assert net == expected, f"charged {net}, expected {expected} (order {order.status})"
        assert not Refund.objects.filter(order_id=order.pk, status="pending").exists()


@pytest.fixture
def gateway_double(settings: Any) -> None:
    settings.PAYMENT_GATEWAYS = {
        channel: {"BACKEND": "tests.support.gateway_double.build", "CHANNEL": channel}
        for channel in ("alipay", "wechat")
    }
    # Nothing leaves the test process: the rules decide when polls and refunds happen.
    settings.TASK_FOLLOW_UPS_ENABLED = False
    settings.LATE_PAYMENT_GRACE_SECONDS = 300
    settings.REFUND_APPROVAL_THRESHOLD = 10**9


@pytest.mark.django_db(transaction=True)
def test_payment_state_machine_holds_whatever_the_world_does(gateway_double: None) -> None:
    run_state_machine_as_test(
        PaymentWorld,
        settings=hypothesis_settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,  # seeded: the suite runs the same examples every time
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
