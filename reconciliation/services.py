"""Daily reconciliation: each gateway's statement against our books.

What is safe heals itself through the same services as everything else — a capture we never
recorded goes to the one state-deciding service (which pays the order or refunds it), a refund
the gateway made goes to the refund service. Everything else becomes an open finding for ops.
Re-running a day is idempotent: findings are keyed by their cause.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from payments.gateways.base import GatewayUnavailable, StatementLine, TradeOutcome, TradeStatus
from payments.gateways.registry import get_gateway
from payments.locks import OrderBusy, order_lock
from payments.models import AttemptStatus, PaymentAttempt
from payments.services import attempt_apply_trade_status
from reconciliation.models import Finding, StatementRun
from refunds.models import Refund, RefundStatus
from refunds.services import refund_apply_result

logger = logging.getLogger(__name__)

# Both gateways cut their statements at midnight China time.
CHINA = dt.timezone(dt.timedelta(hours=8))


def statement_day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time.min, tzinfo=CHINA)
    return start, start + dt.timedelta(days=1)


def china_today() -> dt.date:
    return timezone.now().astimezone(CHINA).date()


def reconcile_day(*, channel: str, day: dt.date) -> StatementRun:
    """Fetch the day's statement (no transaction open), compare, heal what's safe, flag the rest."""
    run, _ = StatementRun.objects.get_or_create(
        channel=channel, statement_date=day, defaults={"status": StatementRun.Status.FAILED}
    )
    try:
        lines = get_gateway(channel).fetch_statement(day)
    except GatewayUnavailable as exc:
        StatementRun.objects.filter(pk=run.pk).update(
            status=StatementRun.Status.FAILED, error=str(exc)[:500], finished_at=timezone.now()
        )
        logger.warning("statement %s %s not available: %s", channel, day, exc)
        run.refresh_from_db()
        return run
    payments = [line for line in lines if line.kind == "payment"]
    refunds = [line for line in lines if line.kind == "refund"]
    healed = _check_payments(run, channel, day, payments) + _check_refunds(run, day, refunds)
    _check_duplicates(run, payments)
    StatementRun.objects.filter(pk=run.pk).update(
        status=StatementRun.Status.DONE,
        payment_lines=len(payments),
        refund_lines=len(refunds),
        healed=healed,
        open_findings=run.findings.filter(state=Finding.State.OPEN).count(),
        error="",
        runs=run.runs + 1,
        finished_at=timezone.now(),
    )
    run.refresh_from_db()
    logger.info(
        "reconciled %s %s: %s payments, %s refunds, %s healed, %s open",
        channel, day, run.payment_lines, run.refund_lines, run.healed, run.open_findings,
    )  # fmt: skip
    return run


def _finding(run: StatementRun, kind: str, state: str, **fields: object) -> None:
    key = {
        "out_trade_no": fields.pop("out_trade_no", ""),
        "out_refund_no": fields.pop("out_refund_no", ""),
    }
    existing = Finding.objects.filter(run=run, kind=kind, **key).first()
    if existing is None:
        Finding.objects.create(run=run, kind=kind, state=state, **key, **fields)
    elif existing.state == Finding.State.OPEN and state == Finding.State.HEALED:
        Finding.objects.filter(pk=existing.pk).update(state=state, **fields)


def _check_payments(
    run: StatementRun, channel: str, day: dt.date, lines: list[StatementLine]
) -> int:
    healed = 0
    seen: set[str] = set()
    attempts = {
        a.out_trade_no: a
        for a in PaymentAttempt.objects.filter(
            channel=channel, out_trade_no__in=[line.out_trade_no for line in lines]
        )
    }
    for line in lines:
        seen.add(line.out_trade_no)
        attempt = attempts.get(line.out_trade_no)
        if attempt is None:
            _finding(run, Finding.Kind.UNKNOWN_TRADE, Finding.State.OPEN,
                     out_trade_no=line.out_trade_no, gateway_amount=line.amount)  # fmt: skip
            continue
        if line.amount != attempt.amount:
            _finding(run, Finding.Kind.AMOUNT_MISMATCH, Finding.State.OPEN,
                     out_trade_no=line.out_trade_no, attempt=attempt,
                     gateway_amount=line.amount, local_amount=attempt.amount)  # fmt: skip
            continue
        if attempt.status != AttemptStatus.SUCCEEDED:
            status = TradeStatus(
                outcome=TradeOutcome.PAID,
                out_trade_no=line.out_trade_no,
                gateway_trade_no=line.gateway_trade_no,
                amount=line.amount,
                currency=line.currency,
                paid_at=line.occurred_at,
            )
            try:
                with order_lock(attempt.order_id):
                    attempt_apply_trade_status(
                        attempt_id=attempt.pk, status=status, source="reconciliation"
                    )
            except OrderBusy:
                continue  # the next run heals it
            healed += 1
            _finding(run, Finding.Kind.NOT_RECORDED, Finding.State.HEALED,
                     out_trade_no=line.out_trade_no, attempt=attempt,
                     gateway_amount=line.amount, local_amount=attempt.amount,
                     detail="capture recorded from the statement")  # fmt: skip
    start, end = statement_day_bounds(day)
    missing = PaymentAttempt.objects.filter(
        channel=channel, status=AttemptStatus.SUCCEEDED, paid_at__gte=start, paid_at__lt=end
    ).exclude(out_trade_no__in=seen)
    for attempt in missing:
        _finding(run, Finding.Kind.MISSING_AT_GATEWAY, Finding.State.OPEN,
                 out_trade_no=attempt.out_trade_no, attempt=attempt,
                 local_amount=attempt.amount)  # fmt: skip
    return healed


def _check_refunds(run: StatementRun, day: dt.date, lines: list[StatementLine]) -> int:
    healed = 0
    seen: set[str] = set()
    for line in lines:
        seen.add(line.out_refund_no)
        refund = Refund.objects.filter(out_refund_no=line.out_refund_no).first()
        if refund is None:
            _finding(run, Finding.Kind.REFUND_NOT_RECORDED, Finding.State.OPEN,
                     out_trade_no=line.out_trade_no, out_refund_no=line.out_refund_no,
                     gateway_amount=line.amount)  # fmt: skip
        elif refund.status == RefundStatus.PENDING and refund_apply_result(
            out_refund_no=refund.out_refund_no, outcome="succeeded"
        ):
            healed += 1
            _finding(run, Finding.Kind.REFUND_NOT_RECORDED, Finding.State.HEALED,
                     out_trade_no=line.out_trade_no, out_refund_no=line.out_refund_no,
                     gateway_amount=line.amount, local_amount=refund.amount)  # fmt: skip
    start, end = statement_day_bounds(day)
    missing = Refund.objects.filter(
        attempt__channel=run.channel,
        status=RefundStatus.SUCCEEDED,
        succeeded_at__gte=start,
        succeeded_at__lt=end,
    ).exclude(out_refund_no__in=seen)
    for refund in missing.select_related("attempt"):
        _finding(run, Finding.Kind.REFUND_MISSING_AT_GATEWAY, Finding.State.OPEN,
                 out_trade_no=refund.attempt.out_trade_no, out_refund_no=refund.out_refund_no,
                 local_amount=refund.amount)  # fmt: skip
    return healed


def _check_duplicates(run: StatementRun, lines: list[StatementLine]) -> None:
    """An order captured more than once: healed if every extra capture has its refund."""
    by_order: dict[int, list[PaymentAttempt]] = defaultdict(list)
    for attempt in PaymentAttempt.objects.filter(
        out_trade_no__in=[line.out_trade_no for line in lines]
    ).select_related("order"):
        by_order[attempt.order_id].append(attempt)
    for attempts in by_order.values():
        if len(attempts) < 2:
            continue
        order = attempts[0].order
        for attempt in attempts:
            if attempt.pk == order.paid_attempt_id:
                continue
            refunded = (
                Refund.objects.filter(attempt=attempt)
                .filter(~Q(status=RefundStatus.FAILED))
                .exists()
            )
            _finding(run, Finding.Kind.DUPLICATE_CAPTURE,
                     Finding.State.HEALED if refunded else Finding.State.OPEN,
                     out_trade_no=attempt.out_trade_no, attempt=attempt,
                     local_amount=attempt.amount,
                     detail="refund recorded" if refunded else "no refund recorded")  # fmt: skip


@transaction.atomic
def finding_resolve(*, finding_id: int, user_id: int) -> None:
    Finding.objects.filter(pk=finding_id, state=Finding.State.OPEN).update(
        state=Finding.State.RESOLVED, resolved_by_id=user_id, resolved_at=timezone.now()
    )
