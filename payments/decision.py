"""The one module that decides payment state.

Every attempt transition, and every order or refund transition caused by a payment or a
refund, is a named function here, chosen from an explicit table: from state × what the
gateway (or the clock) reported → to state + effects. Nothing else writes ``status`` of an
attempt, an order or a refund; callbacks, polls, closes, apply-pay, expiry, refund results,
reconciliation and admin actions report what happened through the public functions at the
bottom, which take the row locks in the one order (order → attempt → refund) and look the
transition up.

Rules that hold whatever order the world reports things in:

* forward only — a succeeded attempt, a failed or succeeded refund and a refunded order never
  move again; a late, stale or reordered answer (a query answered before a capture but
  arriving after it, a close after a success) changes nothing;
* a capture is always recorded, whatever state the attempt was in (money was taken): what it
  means for the order is decided by ``ORDER_CAPTURE_RULES``;
* one integrity policy: an answer that carries another amount or currency than ours moves the
  attempt to ``needs_attention`` (reason ``amount_mismatch``) and changes nothing else;
* "not paid" is not an anomaly: an open, unpaid trade stays live until the order's deadline.

Every transition writes a ``StateChange`` row in the same transaction (the audit trail).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from orders.locks import lock_order_row
from orders.models import CloseReason, Order, OrderStatus
from orders.services import (
    order_release_stock,
    order_reserve_stock,
    orders_release_stock,
    outbox_enqueue,
    outbox_enqueue_many,
)
from payments.events import event_mark_processed, event_mark_rejected
from payments.gateways.base import PaymentAction, TradeOutcome, TradeStatus
from payments.locks import lock_order_then_attempt
from payments.models import (
    UNSETTLED_STATUSES,
    AttemptStatus,
    AttentionReason,
    PaymentAttempt,
    StateChange,
)
from payments.realtime import publish_order_update, publish_order_updates
from refunds.dispatch import refund_dispatch
from refunds.locks import lock_refund_row
from refunds.models import Refund, RefundReason, RefundStatus, new_out_refund_no
from refunds.selectors import refundable_amount, refunded_amount
from shop import logs, metrics
from shop.errors import ApplicationError

logger = logging.getLogger(__name__)

A = AttemptStatus


class Report(StrEnum):
    """What the world reported about an attempt."""

    PREPAY_OPENED = "prepay_opened"  # the gateway opened the trade; the shopper can pay
    PREPAY_REJECTED = "prepay_rejected"  # the gateway refused to open it: no trade exists
    NOT_PAID = "not_paid"  # the trade is open and unpaid
    NOT_FOUND = "not_found"  # the gateway has no such trade yet (an Alipay PC page not opened)
    PAID = "paid"  # money captured, amount and currency ours
    CLOSED = "closed"  # closed or expired unpaid; no longer payable
    UNKNOWN = "unknown"  # timeout, error: we do not know
    SCHEDULE_OVER = "schedule_over"  # the whole poll schedule passed without any answer
    MISMATCH = "mismatch"  # an answer carrying another amount or currency than ours


class Decision(StrEnum):
    PAID = "paid"  # this result made the order paid
    DUPLICATE = "duplicate"  # a second capture: refund recorded
    LATE = "late"  # a capture after the order closed: refund recorded
    REVIVED = "revived"  # a capture after expiry, within grace, stock re-reserved: order paid
    UPDATED = "updated"  # the attempt moved (paying, closed, failed, needs attention)
    UNCHANGED = "unchanged"  # nothing new (repeat delivery, unknown outcome, stale result)
    MISMATCH = "mismatch"  # the gateway reports another amount: attempt set aside for ops


@dataclass
class Step:
    """One decision in progress. Caller of every transition holds the order and attempt row
    locks inside one transaction; effects that must wait for the commit are collected here."""

    order: Order
    attempt: PaymentAttempt
    cause: str
    status: TradeStatus | None = None
    detail: str = ""
    changes: dict[str, Any] = field(default_factory=dict)  # extra fields a transition records
    refunds_to_run: list[int] = field(default_factory=list)
    # Audit rows kept back to be written in one INSERT before the commit (``_flush_audit``);
    # None writes each at once.
    audits: list[StateChange] | None = None


@dataclass(frozen=True)
class Rule:
    to: str
    transition: Callable[[Step], Decision]
    effects: str


# --- the audit trail ---------------------------------------------------------------------------


def _audit(
    *,
    entity: str,
    order: Order,
    from_status: str,
    to_status: str,
    transition: str,
    cause: str,
    attempt: PaymentAttempt | None = None,
    refund: Refund | None = None,
    detail: str = "",
    into: Step | None = None,
) -> None:
    change = StateChange(
        entity=entity,
        order=order,
        attempt=attempt,
        refund=refund,
        from_status=from_status,
        to_status=to_status,
        transition=transition,
        cause=cause[:80],
        detail=detail[:200],
    )
    if into is not None and into.audits is not None:
        into.audits.append(change)
    else:
        change.save(force_insert=True)


def _flush_audit(step: Step) -> None:
    """Write the audit rows a step kept back, in one statement, inside its transaction."""
    if step.audits:
        StateChange.objects.bulk_create(step.audits)
        step.audits.clear()


def _move_attempt(step: Step, to: str, transition: str, **changes: Any) -> bool:
    """Conditionally update the attempt (the version is the fence) and audit the move."""
    attempt = step.attempt
    from_status = attempt.status
    changes["status"] = to
    changes.setdefault("updated_at", timezone.now())
    updated = PaymentAttempt.objects.filter(pk=attempt.pk, version=attempt.version).update(
        version=F("version") + 1, **changes
    )
    if not updated:
        return False
    for name, value in changes.items():
        setattr(attempt, name, value)
    attempt.version += 1
    if from_status != to:
        _audit(
            entity=StateChange.Entity.ATTEMPT,
            order=step.order,
            attempt=attempt,
            from_status=from_status,
            to_status=to,
            transition=transition,
            cause=step.cause,
            detail=step.detail,
            into=step,
        )
    return True


def _move_order(step: Step, to: str, transition: str, **changes: Any) -> None:
    order = step.order
    from_status = order.status
    now = timezone.now()
    Order.objects.filter(pk=order.pk, status=from_status).update(
        status=to, updated_at=now, **changes
    )
    order.status = to
    for name, value in changes.items():
        setattr(order, name, value)
    _audit(
        entity=StateChange.Entity.ORDER,
        order=order,
        attempt=step.attempt,
        from_status=from_status,
        to_status=to,
        transition=transition,
        cause=step.cause,
        detail=step.detail,
        into=step,
    )


# --- attempt transitions (caller holds the order and attempt row locks) ------------------------


def attempt_open(step: Step) -> Decision:
    """created → paying: the gateway opened the trade; keep what the shopper's client needs."""
    moved = _move_attempt(step, A.PAYING, "attempt_open", **step.changes)
    return Decision.UPDATED if moved else Decision.UNCHANGED


def attempt_reject(step: Step) -> Decision:
    """created → failed: the gateway refused to open the trade, so nothing can be paid on it."""
    moved = _move_attempt(
        step, A.FAILED, "attempt_reject", last_error=step.detail[:500], next_poll_at=None
    )
    return Decision.UPDATED if moved else Decision.UNCHANGED


def attempt_mark_paying(step: Step) -> Decision:
    """created → paying: the gateway knows the trade and it is open."""
    moved = _move_attempt(step, A.PAYING, "attempt_mark_paying", last_outcome="not_paid")
    return Decision.UPDATED if moved else Decision.UNCHANGED


def attempt_resume(step: Step) -> Decision:
    """needs_attention (gateway silent) → paying: the gateway answers again and the trade is
    open and unpaid; nothing for a person to do any more. The one-live-attempt constraint
    decides if another attempt went live meanwhile (then it stays set aside)."""
    if step.attempt.attention_reason != AttentionReason.GATEWAY_SILENT:
        return Decision.UNCHANGED  # a mismatch or contradiction waits for a person
    try:
        with transaction.atomic():
            moved = _move_attempt(
                step,
                A.PAYING,
                "attempt_resume",
                attention_reason="",
                last_error="",
                last_outcome="not_paid",
            )
    except IntegrityError:
        return Decision.UNCHANGED
    return Decision.UPDATED if moved else Decision.UNCHANGED


def attempt_capture(step: Step) -> Decision:
    """any but succeeded → succeeded: money was taken. Then ``ORDER_CAPTURE_RULES`` decide."""
    assert step.status is not None
    now = timezone.now()
    paid_at = step.status.paid_at or now
    attempt = step.attempt
    _move_attempt(
        step,
        A.SUCCEEDED,
        "attempt_capture",
        paid_at=paid_at,
        captured_amount=attempt.amount,
        gateway_trade_no=step.status.gateway_trade_no or attempt.gateway_trade_no,
        next_poll_at=None,
        last_error="",
        last_outcome="paid",
        attention_reason="",
    )
    return _settle_capture(step, paid_at)


def attempt_close(step: Step) -> Decision:
    """created/paying/needs_attention → closed. A closed trade stays watched until the order's
    deadline plus grace: a gateway may still take a payment on it (an ignored close)."""
    now = timezone.now()
    moved = _move_attempt(
        step,
        A.CLOSED,
        "attempt_close",
        closed_at=now,
        next_poll_at=closed_watch_next_poll(step.order, now),
        last_outcome="closed",
    )
    return Decision.UPDATED if moved else Decision.UNCHANGED


def _flag(step: Step, reason: AttentionReason, error: str) -> Decision:
    logger.error("attempt %s needs attention: %s", step.attempt.out_trade_no, error)
    moved = _move_attempt(
        step,
        A.NEEDS_ATTENTION,
        f"attempt_flag_{reason}"[:40],
        attention_reason=reason,
        last_error=error[:500],
        # Still polled at the last interval: it heals by itself when the gateway answers.
        next_poll_at=timezone.now() + dt.timedelta(seconds=settings.PAYMENT_POLL_SCHEDULE[-1]),
    )
    return Decision.UPDATED if moved else Decision.UNCHANGED


def attempt_flag_silent(step: Step) -> Decision:
    """created/paying → needs_attention: no answer at all through the whole poll schedule."""
    return _flag(step, AttentionReason.GATEWAY_SILENT, "gateway silent through the poll schedule")


def attempt_flag_mismatch(step: Step) -> Decision:
    """any but succeeded → needs_attention: the gateway reports another amount or currency."""
    if step.attempt.attention_reason == AttentionReason.AMOUNT_MISMATCH:
        return Decision.MISMATCH
    _flag(step, AttentionReason.AMOUNT_MISMATCH, step.detail or "amount or currency mismatch")
    return Decision.MISMATCH


# The attempt table: (from, report) → rule. A pair that is not here changes nothing: that is
# how "forward only" is kept (nothing leaves succeeded; failed and closed only for a capture).
_CAPTURABLE = (A.CREATED, A.PAYING, A.NEEDS_ATTENTION, A.CLOSED, A.FAILED)
ATTEMPT_RULES: dict[tuple[str, Report], Rule] = {
    (A.CREATED, Report.PREPAY_OPENED): Rule(A.PAYING, attempt_open, "action stored"),
    # A poll saw the trade open before the prepay answer was recorded: keep the action.
    (A.PAYING, Report.PREPAY_OPENED): Rule(A.PAYING, attempt_open, "action stored"),
    (A.CREATED, Report.PREPAY_REJECTED): Rule(A.FAILED, attempt_reject, "polling stops"),
    (A.CREATED, Report.NOT_PAID): Rule(A.PAYING, attempt_mark_paying, "—"),
    (A.NEEDS_ATTENTION, Report.NOT_PAID): Rule(
        A.PAYING, attempt_resume, "only if the reason was gateway_silent"
    ),
    **{
        (s, Report.PAID): Rule(A.SUCCEEDED, attempt_capture, "order capture rules")
        for s in _CAPTURABLE
    },
    **{
        (s, Report.CLOSED): Rule(A.CLOSED, attempt_close, "watched until deadline + grace")
        for s in (A.CREATED, A.PAYING, A.NEEDS_ATTENTION)
    },
    **{
        (s, Report.SCHEDULE_OVER): Rule(
            A.NEEDS_ATTENTION, attempt_flag_silent, "reason gateway_silent; still polled"
        )
        for s in (A.CREATED, A.PAYING)
    },
    **{
        (s, Report.MISMATCH): Rule(
            A.NEEDS_ATTENTION, attempt_flag_mismatch, "reason amount_mismatch; nothing else"
        )
        for s in _CAPTURABLE
    },
}


# --- order transitions caused by a capture (caller holds both row locks) -----------------------


def order_mark_paid(step: Step) -> Decision:
    """unpaid → paid (capture within the deadline plus grace); outbox ``order.paid``."""
    _order_paid(step, "order_mark_paid")
    return Decision.PAID


def order_revive(step: Step) -> Decision:
    """closed (expired) → paid: a capture within grace after expiry; stock taken again."""
    if not order_reserve_stock(order=step.order):
        return order_keep_and_refund_late(step)
    _order_paid(step, "order_revive")
    return Decision.REVIVED


def order_close_late(step: Step) -> Decision:
    """unpaid → closed (expired) + refund: paid long after the deadline (time_expire ignored)."""
    _order_close(step, CloseReason.EXPIRED, "order_close_late")
    _refund_record_automatic(step, RefundReason.ORDER_CLOSED)
    return Decision.LATE


def order_keep_and_refund_duplicate(step: Step) -> Decision:
    """paid stays paid + refund ``duplicate_payment``: a second capture for a paid order."""
    if step.order.paid_attempt_id == step.attempt.pk:
        return Decision.UNCHANGED
    _refund_record_automatic(step, RefundReason.DUPLICATE_PAYMENT)
    return Decision.DUPLICATE


def order_keep_and_refund_late(step: Step) -> Decision:
    """closed stays closed + refund ``order_closed``: a capture after the order closed."""
    _refund_record_automatic(step, RefundReason.ORDER_CLOSED)
    return Decision.LATE


def _order_paid(step: Step, transition: str) -> None:
    attempt = step.attempt
    paid_at = attempt.paid_at or timezone.now()
    _move_order(step, OrderStatus.PAID, transition, paid_at=paid_at, paid_attempt=attempt)
    outbox_enqueue(
        topic="order.paid",
        payload={
            "order_id": step.order.public_id,
            "amount": attempt.amount,
            "currency": attempt.currency,
            "channel": attempt.channel,
            "out_trade_no": attempt.out_trade_no,
            "paid_at": paid_at.isoformat(),
        },
    )


def _order_close(step: Step, reason: str, transition: str) -> None:
    now = timezone.now()
    _move_order(step, OrderStatus.CLOSED, transition, closed_at=now, close_reason=reason)
    order_release_stock(order=step.order)
    outbox_enqueue(
        topic="order.closed",
        payload={"order_id": step.order.public_id, "reason": reason, "closed_at": now.isoformat()},
    )


# What a newly known capture means for its order: (order state, capture within the deadline
# plus grace) → rule. "closed_expired" is an order closed by expiry, "closed" any other close.
ORDER_CAPTURE_RULES: dict[tuple[str, bool], Rule] = {
    ("unpaid", True): Rule(OrderStatus.PAID, order_mark_paid, "outbox order.paid"),
    ("unpaid", False): Rule(
        OrderStatus.CLOSED, order_close_late, "stock released, refund order_closed"
    ),
    ("paid", True): Rule("(unchanged)", order_keep_and_refund_duplicate, "refund duplicate"),
    ("paid", False): Rule("(unchanged)", order_keep_and_refund_duplicate, "refund duplicate"),
    ("closed_expired", True): Rule(
        OrderStatus.PAID, order_revive, "stock re-reserved (else refund order_closed)"
    ),
    ("closed_expired", False): Rule("(unchanged)", order_keep_and_refund_late, "refund"),
    ("closed", True): Rule("(unchanged)", order_keep_and_refund_late, "refund order_closed"),
    ("closed", False): Rule("(unchanged)", order_keep_and_refund_late, "refund order_closed"),
}


def _order_state_class(order: Order) -> str:
    if order.status == OrderStatus.UNPAID:
        return "unpaid"
    if order.is_paid:
        return "paid"
    return "closed_expired" if order.close_reason == CloseReason.EXPIRED else "closed"


def _settle_capture(step: Step, paid_at: dt.datetime) -> Decision:
    grace = dt.timedelta(seconds=settings.LATE_PAYMENT_GRACE_SECONDS)
    in_grace = paid_at <= step.order.expires_at + grace
    rule = ORDER_CAPTURE_RULES[(_order_state_class(step.order), in_grace)]
    return rule.transition(step)


def _refund_record_automatic(step: Step, reason: str) -> None:
    """Record the automatic refund of a capture that must not be kept (one per cause, held by
    a unique constraint); it is sent to the gateway after commit."""
    attempt = step.attempt
    amount = refundable_amount(attempt.pk)
    if amount <= 0:
        return
    try:
        with transaction.atomic():
            refund = Refund.objects.create(
                attempt=attempt,
                order_id=attempt.order_id,
                amount=amount,
                currency=attempt.currency,
                reason=reason,
                note="automatic",
            )
    except IntegrityError:
        return  # this cause already has its refund
    _audit(
        entity=StateChange.Entity.REFUND,
        order=step.order,
        attempt=attempt,
        refund=refund,
        from_status="-",
        to_status=RefundStatus.PENDING,
        transition=f"refund_record_{reason}"[:40],
        cause=step.cause,
        into=step,
    )
    logger.warning(
        "automatic refund %s of %s for %s (%s)", refund.out_refund_no, amount, attempt, reason
    )
    transaction.on_commit(lambda: metrics.refund_event(cause=reason, outcome="recorded"))
    step.refunds_to_run.append(refund.pk)


# --- order close and refund results --------------------------------------------------------------


def order_close(step: Step) -> Decision:
    """unpaid → closed (expired or cancelled), stock released; only with no unsettled attempt."""
    _order_close(step, step.detail, "order_close")
    return Decision.UPDATED


def order_refund_settled(step: Step) -> Decision:
    """paid/partially_refunded → partially_refunded/refunded, after a refund of the paid
    attempt succeeded. Refunds of other captures (duplicates, late) leave the order as it is."""
    order = step.order
    if not order.is_paid or order.paid_attempt_id != step.attempt.pk:
        return Decision.UNCHANGED
    refunded = refunded_amount(step.attempt.pk)
    to = OrderStatus.REFUNDED if refunded >= order.total_amount else OrderStatus.PARTIALLY_REFUNDED
    if to != order.status:
        _move_order(step, to, "order_refund_settled")
    return Decision.UPDATED


REFUND_RULES: dict[tuple[str, str], str] = {
    # (refund from, gateway said) → refund to; the order follows through order_refund_settled.
    # Besides these, ops may resend a failed refund: failed → pending (``refund_resend``).
    (RefundStatus.PENDING, "succeeded"): RefundStatus.SUCCEEDED,
    (RefundStatus.PENDING, "failed"): RefundStatus.FAILED,
}

ORDER_RULES: dict[tuple[str, str], Rule] = {
    (OrderStatus.UNPAID, "expire_or_cancel"): Rule(
        OrderStatus.CLOSED, order_close, "only with no unsettled attempt; stock released"
    ),
    (OrderStatus.PAID, "refund_succeeded"): Rule(
        "partially_refunded/refunded", order_refund_settled, "by the sum refunded"
    ),
    (OrderStatus.PARTIALLY_REFUNDED, "refund_succeeded"): Rule(
        "partially_refunded/refunded", order_refund_settled, "by the sum refunded"
    ),
}


# --- integrity: one policy for every answer that carries an amount ------------------------------


def integrity_problem(attempt: PaymentAttempt, *, amount: int | None, currency: str | None) -> str:
    """Why an answer about ``attempt`` cannot be trusted as ours, or "" if it can.

    Used for callbacks, queries, closes, refunds, refund queries and statement lines alike.
    """
    if amount is not None and amount != attempt.amount:
        return f"gateway reports amount {amount}, ours {attempt.amount}"
    if currency and currency != attempt.currency:
        return f"gateway reports currency {currency}, ours {attempt.currency}"
    return ""


def _report_for(status: TradeStatus, attempt: PaymentAttempt) -> tuple[Report, str]:
    problem = integrity_problem(attempt, amount=status.amount, currency=status.currency)
    if problem and status.outcome is not TradeOutcome.UNKNOWN:
        return Report.MISMATCH, problem
    return {
        TradeOutcome.PAID: Report.PAID,
        TradeOutcome.NOT_PAID: Report.NOT_PAID,
        # No rule uses it: a trade the gateway does not know yet can still be opened and paid
        # (an Alipay PC trade exists once the shopper opens its page), so it stays as it is.
        TradeOutcome.NOT_FOUND: Report.NOT_FOUND,
        TradeOutcome.CLOSED: Report.CLOSED,
        TradeOutcome.UNKNOWN: Report.UNKNOWN,
    }[status.outcome], ""


def closed_watch_next_poll(order: Order, now: dt.datetime) -> dt.datetime | None:
    """When to look at a closed trade again, or None once no gateway could still take payment."""
    watch_until = order.expires_at + dt.timedelta(seconds=settings.LATE_PAYMENT_GRACE_SECONDS)
    if now >= watch_until:
        return None
    return min(now + dt.timedelta(seconds=settings.PAYMENT_POLL_SCHEDULE[-1]), watch_until)


# --- after commit ------------------------------------------------------------------------------


def paid_cache_key(order_public_id: str) -> str:
    return f"paid:{order_public_id}"


def cache_paid_result(order: Order) -> None:
    """Warm the paid-result cache. Called only after the commit that made the order paid."""
    try:
        cache.set(paid_cache_key(order.public_id), "paid", settings.PAID_CACHE_TTL_SECONDS)
    except Exception:
        logger.warning("paid cache unavailable", exc_info=True)


def _after(step: Step, decision: Decision) -> Decision:
    if decision in {Decision.PAID, Decision.REVIVED}:
        order = step.order
        transaction.on_commit(lambda: cache_paid_result(order))
    if decision is not Decision.UNCHANGED:
        publish_order_update(step.order.public_id)
    for refund_id in step.refunds_to_run:
        refund_dispatch(refund_id)
    return decision


# --- the entry points: lock, re-read, look up, apply -------------------------------------------


# What a newly recorded capture can mean for its order (each comes from ``attempt_capture``).
CAPTURE_DECISIONS = frozenset({Decision.PAID, Decision.DUPLICATE, Decision.LATE, Decision.REVIVED})


def attempt_apply_trade_status(
    *,
    attempt_id: int,
    status: TradeStatus,
    source: str,
    order_id: int | None = None,
    applying_event: int | None = None,
) -> Decision:
    """Apply what a gateway said about a trade (callback, query, close, reconciliation).

    Idempotent; state only moves forward. The caller should hold the order's Redis lock
    (``orders.locks.order_lock``); correctness does not depend on it. ``order_id``, when the
    caller knows it, saves looking it up; ``applying_event`` is the stored notification being
    applied: it is marked processed (or rejected, on a mismatch) in the same transaction, so a
    notification counts as applied exactly when its effects are committed.
    """
    with transaction.atomic(durable=True):
        order, attempt = lock_order_then_attempt(attempt_id, order_id=order_id)
        logs.bind(order_id=order.public_id, out_trade_no=attempt.out_trade_no)
        report, problem = _report_for(status, attempt)
        step = Step(
            order=order, attempt=attempt, cause=source, status=status, detail=problem, audits=[]
        )
        rule = ATTEMPT_RULES.get((attempt.status, report))
        decision = rule.transition(step) if rule else Decision.UNCHANGED
        _flush_audit(step)
        _note_outcome(attempt, status.outcome)
        if applying_event is not None:
            if decision is Decision.MISMATCH:
                event_mark_rejected(applying_event, "amount_mismatch")
            else:
                event_mark_processed(applying_event)
        _after(step, decision)
    if decision in CAPTURE_DECISIONS and attempt.paid_at is not None:
        metrics.capture_known(
            channel=attempt.channel, source=source, decision=decision, paid_at=attempt.paid_at
        )
    if decision is not Decision.UNCHANGED:
        logger.info(
            "attempt %s %s -> %s via %s (order %s %s)",
            attempt.out_trade_no,
            status.outcome,
            decision,
            source,
            order.public_id,
            order.status,
        )
    return decision


def _note_outcome(attempt: PaymentAttempt, outcome: TradeOutcome) -> None:
    """Remember the last answer of a live trade (what the shopper's page says depends on it)."""
    if attempt.status in UNSETTLED_STATUSES and attempt.last_outcome != outcome:
        PaymentAttempt.objects.filter(pk=attempt.pk).update(last_outcome=outcome)
        attempt.last_outcome = outcome


def attempt_apply_prepay(
    *,
    attempt_id: int,
    opened: PaymentAction | None,
    gateway_trade_no: str = "",
    rejected_error: str = "",
    source: str = "apply_pay",
) -> tuple[PaymentAttempt, Decision]:
    """Record the gateway's answer to a prepay: opened (``opened`` is the action), rejected
    (``rejected_error``), or unknown (neither: the trade may exist; polling finds out)."""
    with transaction.atomic(durable=True):
        order, attempt = lock_order_then_attempt(attempt_id)
        step = Step(order=order, attempt=attempt, cause=source)
        if opened is not None:
            step.changes = {
                "action": opened.as_dict(),
                "gateway_trade_no": gateway_trade_no or attempt.gateway_trade_no,
            }
            report = Report.PREPAY_OPENED
        elif rejected_error:
            step.detail = rejected_error
            report = Report.PREPAY_REJECTED
        else:
            _note_outcome(attempt, TradeOutcome.UNKNOWN)
            return attempt, Decision.UNCHANGED
        rule = ATTEMPT_RULES.get((attempt.status, report))
        decision = rule.transition(step) if rule else Decision.UNCHANGED
        _after(step, decision)
    return attempt, decision


def attempt_after_poll(*, attempt_id: int, outcome: TradeOutcome) -> PaymentAttempt:
    """Poll bookkeeping after a query was applied: the next poll time, and — when the whole
    schedule passed without an answer — the attempt set aside for a person.

    The schedule: the configured steps after apply-pay, then ``PAYMENT_POLL_LONG_INTERVAL_SECONDS``
    while the trade is open and unpaid (never past the order's deadline, when expiry closes it
    at the gateway); a closed trade is watched until the deadline plus grace.
    """
    now = timezone.now()
    with transaction.atomic(durable=True):
        order, attempt = lock_order_then_attempt(attempt_id)
        step = Step(order=order, attempt=attempt, cause="poll")
        schedule = settings.PAYMENT_POLL_SCHEDULE
        poll_step = attempt.poll_step + 1
        changes: dict[str, Any] = {"poll_step": poll_step, "last_polled_at": now}
        if attempt.status == A.CLOSED:
            if attempt.next_poll_at is None:
                return attempt
            next_poll = closed_watch_next_poll(order, now)
            if next_poll is None and outcome is TradeOutcome.UNKNOWN:
                # The watch may only end on an answer: a capture made inside the window must be
                # found even if the gateway was silent when the window closed.
                next_poll = now + dt.timedelta(seconds=schedule[-1])
            changes["next_poll_at"] = next_poll
        elif attempt.status in UNSETTLED_STATUSES:
            if poll_step < len(schedule):
                changes["next_poll_at"] = max(
                    attempt.created_at + dt.timedelta(seconds=schedule[poll_step]), now
                )
            elif attempt.status == A.NEEDS_ATTENTION:
                changes["next_poll_at"] = now + dt.timedelta(seconds=schedule[-1])
            elif outcome is TradeOutcome.UNKNOWN:
                attempt_flag_silent(step)  # sets its own next poll
            else:
                changes["next_poll_at"] = now + _open_trade_wait(order, now)
        else:
            return attempt
        PaymentAttempt.objects.filter(pk=attempt.pk).update(**changes)
        for name, value in changes.items():
            setattr(attempt, name, value)
    return attempt


def _open_trade_wait(order: Order, now: dt.datetime) -> dt.timedelta:
    """How long to wait before asking again about an open, unpaid trade past its schedule: the
    long interval, but no later than the order's deadline (when expiry closes it)."""
    long_interval = dt.timedelta(seconds=settings.PAYMENT_POLL_LONG_INTERVAL_SECONDS)
    until_deadline = order.expires_at - now
    if until_deadline <= dt.timedelta(0):
        return dt.timedelta(seconds=settings.PAYMENT_POLL_SCHEDULE[-1])
    return max(min(long_interval, until_deadline), dt.timedelta(seconds=1))


def order_close_unpaid(*, order_id: int, reason: str, cause: str = "") -> bool:
    """Close an unpaid order and release its stock, if it has no unsettled payment attempt.

    A conditional decision: an order paid meanwhile stays paid, and returns False. The caller
    closes live attempts at their gateway first (``payments.services.order_cancel_or_expire``).
    """
    with transaction.atomic(durable=True):
        order = lock_order_row(order_id)
        if order.status != OrderStatus.UNPAID:
            return False
        if order.attempts.filter(status__in=UNSETTLED_STATUSES).exists():
            return False
        attempt = order.attempts.order_by("-created_at").first()
        step = Step(order=order, attempt=attempt, cause=cause or reason, detail=reason)  # type: ignore[arg-type]
        ORDER_RULES[(OrderStatus.UNPAID, "expire_or_cancel")].transition(step)
        publish_order_update(order.public_id)
    logger.info("order closed %s reason=%s", order.public_id, reason)
    return True


# Expired unpaid orders with no unsettled attempt, oldest deadline first; rows someone else
# holds are skipped (they are being decided now: the next sweep looks again). The status is a
# literal, so the planner can always use the index of unpaid orders (order_unpaid_expiry).
_LOCK_EXPIRED_WITHOUT_ATTEMPT = f"""
SELECT o.id FROM {Order._meta.db_table} AS o
WHERE o.status = '{OrderStatus.UNPAID.value}' AND o.expires_at <= %(now)s
    AND NOT EXISTS (SELECT 1 FROM {PaymentAttempt._meta.db_table} AS a
                    WHERE a.order_id = o.id AND a.status = ANY(%(unsettled)s))
ORDER BY o.expires_at
LIMIT %(limit)s
FOR UPDATE OF o SKIP LOCKED
"""  # noqa: S608 (table names from the models)

# Close the locked orders that still qualify. A statement of its own: its snapshot is taken
# after the row locks, so it sees every attempt committed before them (opening an attempt takes
# the order row lock first). Returns what the audit rows and the events need, the latest
# attempt included (``order_close_unpaid`` names it in the audit row too).
_CLOSE_LOCKED_WITHOUT_ATTEMPT = f"""
UPDATE {Order._meta.db_table} AS o
SET status = %(to)s, closed_at = %(now)s, close_reason = %(reason)s, updated_at = %(now)s
WHERE o.id = ANY(%(ids)s::bigint[]) AND o.status = %(unpaid)s
    AND NOT EXISTS (SELECT 1 FROM {PaymentAttempt._meta.db_table} AS a
                    WHERE a.order_id = o.id AND a.status = ANY(%(unsettled)s))
RETURNING o.id, o.public_id,
    (SELECT a.id FROM {PaymentAttempt._meta.db_table} AS a
     WHERE a.order_id = o.id ORDER BY a.created_at DESC LIMIT 1)
"""  # noqa: S608 (table names from the models)


def orders_close_expired_bulk(*, limit: int, cause: str = "") -> list[int]:
    """Close up to ``limit`` expired unpaid orders that have no unsettled attempt, in one
    transaction; returns their ids.

    The decision is ``order_close_unpaid``'s (``ORDER_RULES``: unpaid → closed, only with no
    unsettled attempt), made for many orders at once: each closed order gets its ``order_close``
    audit row, its outbox ``order.closed`` event and its stock back, written in bulk. Orders
    with an unsettled attempt are left alone: they are closed at the gateway first
    (``payments.services.order_cancel_or_expire``). Takes no Redis lock: the order row locks
    (skipping rows someone holds) and the conditional update keep it correct.
    """
    if limit <= 0:
        return []
    rule = ORDER_RULES[(OrderStatus.UNPAID, "expire_or_cancel")]
    reason = str(CloseReason.EXPIRED)
    now = timezone.now()
    params: dict[str, Any] = {
        "unpaid": OrderStatus.UNPAID,
        "to": rule.to,
        "unsettled": [str(status) for status in UNSETTLED_STATUSES],
        "now": now,
        "limit": limit,
        "reason": reason,
    }
    with transaction.atomic(durable=True):
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_EXPIRED_WITHOUT_ATTEMPT, params)
            params["ids"] = [row[0] for row in cursor.fetchall()]
            if not params["ids"]:
                return []
            cursor.execute(_CLOSE_LOCKED_WITHOUT_ATTEMPT, params)
            closed: list[tuple[int, str, int | None]] = cursor.fetchall()
        StateChange.objects.bulk_create(
            StateChange(
                entity=StateChange.Entity.ORDER,
                order_id=order_id,
                attempt_id=attempt_id,
                from_status=OrderStatus.UNPAID,
                to_status=rule.to,
                transition=order_close.__name__,
                cause=(cause or reason)[:80],
                detail=reason[:200],
            )
            for order_id, _, attempt_id in closed
        )
        order_ids = [order_id for order_id, _, _ in closed]
        orders_release_stock(order_ids=order_ids)
        outbox_enqueue_many(
            topic="order.closed",
            payloads=[
                {"order_id": public_id, "reason": reason, "closed_at": now.isoformat()}
                for _, public_id, _ in closed
            ],
        )
        publish_order_updates([public_id for _, public_id, _ in closed])
    for _, public_id, _ in closed:
        logger.info("order closed %s reason=%s", public_id, reason)
    return order_ids


def refund_apply_result(
    *,
    out_refund_no: str,
    outcome: str,
    gateway_refund_id: str = "",
    error: str = "",
    amount: int | None = None,
    cause: str = "gateway",
) -> bool:
    """Apply what a gateway said about a refund (answer, query or notification). Idempotent;
    a succeeded or failed refund never moves again. Returns True if it reached a final state.

    An answer that carries another amount than the refund's is not applied (one integrity
    policy): the refund stays pending, its error says why, and the sweep asks again.
    """
    attempt_id = (
        Refund.objects.filter(out_refund_no=out_refund_no)
        .values_list("attempt_id", flat=True)
        .first()
    )
    if attempt_id is None:
        return False
    now = timezone.now()
    with transaction.atomic(durable=True):
        order, attempt = lock_order_then_attempt(attempt_id)
        refund = lock_refund_row(out_refund_no=out_refund_no)
        if gateway_refund_id:
            refund.gateway_refund_id = gateway_refund_id
        to = REFUND_RULES.get((refund.status, outcome))
        if to is not None and amount is not None and amount != refund.amount:
            to = None
            error = f"gateway reports refund amount {amount}, ours {refund.amount}"
            logger.error("refund %s: %s", out_refund_no, error)
        if to is None:
            if refund.status == RefundStatus.PENDING:
                refund.last_error = error[:500]
                refund.save(update_fields=["gateway_refund_id", "last_error", "updated_at"])
            return False
        from_status = refund.status
        refund.status = to
        refund.next_check_at = None
        if to == RefundStatus.SUCCEEDED:
            refund.succeeded_at = now
            refund.last_error = ""
        else:
            refund.last_error = error[:500] or "rejected by the gateway"
            logger.error("refund %s failed at the gateway: %s", out_refund_no, error)
        refund.save()
        cause_of_refund = refund.reason
        transaction.on_commit(lambda: metrics.refund_event(cause=cause_of_refund, outcome=to))
        step = Step(order=order, attempt=attempt, cause=cause)
        _audit(
            entity=StateChange.Entity.REFUND,
            order=order,
            attempt=attempt,
            refund=refund,
            from_status=from_status,
            to_status=to,
            transition=f"refund_{to}",
            cause=cause,
            detail=refund.last_error,
        )
        if to == RefundStatus.SUCCEEDED:
            rule = ORDER_RULES.get((order.status, "refund_succeeded"))
            if rule is not None:
                rule.transition(step)
            outbox_enqueue(
                topic="refund.succeeded",
                payload={
                    "order_id": order.public_id,
                    "refund_id": refund.public_id,
                    "amount": refund.amount,
                    "currency": refund.currency,
                    "reason": refund.reason,
                },
            )
        publish_order_update(order.public_id)
    return True


def refund_resend(*, refund_id: int, cause: str) -> Refund:
    """failed → pending under a fresh ``out_refund_no`` (the failed one moved no money), sent
    again after commit. Caller holds the order's Redis lock."""
    attempt_id = Refund.objects.values_list("attempt_id", flat=True).get(pk=refund_id)
    with transaction.atomic(durable=True):
        order, attempt = lock_order_then_attempt(attempt_id)
        refund = Refund.objects.select_for_update(of=("self",)).get(pk=refund_id)
        if refund.status != RefundStatus.FAILED:
            raise ApplicationError("refund_not_failed", "Only a failed refund can be retried.")
        if refund.amount > refundable_amount(attempt.pk):
            raise ApplicationError(
                "refund_exceeds_capture", "Retrying would refund more than was captured."
            )
        refund.status = RefundStatus.PENDING
        refund.out_refund_no = new_out_refund_no()
        refund.last_error = ""
        refund.save(update_fields=["status", "out_refund_no", "last_error", "updated_at"])
        _audit(
            entity=StateChange.Entity.REFUND,
            order=order,
            attempt=attempt,
            refund=refund,
            from_status=RefundStatus.FAILED,
            to_status=RefundStatus.PENDING,
            transition="refund_resend",
            cause=cause,
        )
        refund_dispatch(refund.pk)
    return refund


def refund_record_unkept_capture(*, attempt_id: int, cause: str = "sweep") -> int:
    """The refund sweep's backstop: record the automatic refund of a succeeded attempt that is
    not its order's paid attempt (an earlier decision died before recording it). Returns how
    many refunds were recorded (0 or 1)."""
    with transaction.atomic(durable=True):
        order, attempt = lock_order_then_attempt(attempt_id)
        if order.paid_attempt_id == attempt.pk or attempt.status != A.SUCCEEDED:
            return 0
        if order.status == OrderStatus.UNPAID:
            return 0  # unpaid orders are settled by a capture's decision, not the sweep
        step = Step(order=order, attempt=attempt, cause=cause)
        reason = RefundReason.DUPLICATE_PAYMENT if order.is_paid else RefundReason.ORDER_CLOSED
        _refund_record_automatic(step, reason)
        _after(step, Decision.UNCHANGED)
    return len(step.refunds_to_run)
