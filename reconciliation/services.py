"""Daily reconciliation: each gateway's statement against our books.

A run, for one channel and one day:

1. **download** — the adapter streams the statement to a temporary file and checks it (no
   transaction open; ``payments.gateways.base.StatementFile``);
2. **stage** — its lines are parsed one at a time and ``COPY``-ed, in batches, into a temporary
   table on this connection (progress is written to the run between batches);
3. **match** — a handful of SQL joins between that table and our attempts and refunds return
   only the disagreements, read through a server-side cursor in batches.

So memory does not grow with the statement: nothing holds its lines, only the current batch of
disagreements. What is safe heals itself through the same services as everything else — a
capture we never recorded goes to the one state-deciding service (which pays the order, or
refunds the capture when it is a duplicate or late), a refund the gateway made goes to the
refund service. Everything else becomes an open finding for ops. Re-running a day is
idempotent: a finding is keyed by its run, kind, trade and refund.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from orders.locks import OrderBusy, order_lock
from payments.decision import Decision, attempt_apply_trade_status
from payments.gateways.base import (
    GatewayUnavailable,
    StatementFile,
    StatementLine,
    StatementNotReady,
    TradeOutcome,
    TradeStatus,
)
from payments.gateways.registry import get_gateway
from reconciliation.models import Finding, StatementRun
from refunds.services import refund_apply_result
from shop import metrics

logger = logging.getLogger(__name__)

# Both gateways cut their statements at midnight China time.
CHINA = dt.timezone(dt.timedelta(hours=8))
STAGE_BATCH_LINES = 50_000  # lines per COPY; progress is written between batches
MATCH_BATCH_ROWS = 1_000  # disagreements fetched at a time
STALE_RUN = dt.timedelta(hours=1)  # a "running" run older than this was abandoned
_KIND_CODE = {"payment": "P", "refund": "R"}


def statement_day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time.min, tzinfo=CHINA)
    return start, start + dt.timedelta(days=1)


def china_today() -> dt.date:
    return timezone.now().astimezone(CHINA).date()


# --- runs ---------------------------------------------------------------------------------------


def run_request(*, channel: str, day: dt.date, user_id: int | None = None) -> StatementRun:
    """Record that ops asked for a run (the worker does it: ``reconciliation.tasks``)."""
    run, _ = StatementRun.objects.get_or_create(
        channel=channel, statement_date=day, defaults={"status": StatementRun.Status.QUEUED}
    )
    StatementRun.objects.filter(pk=run.pk).exclude(status=StatementRun.Status.RUNNING).update(
        status=StatementRun.Status.QUEUED, requested_by_id=user_id, error=""
    )
    run.refresh_from_db()
    return run


def _run_claim(channel: str, day: dt.date) -> tuple[StatementRun, bool]:
    """Mark the day's run as running, unless another process is running it right now."""
    run, _ = StatementRun.objects.get_or_create(
        channel=channel, statement_date=day, defaults={"status": StatementRun.Status.QUEUED}
    )
    now = timezone.now()
    claimed = (
        StatementRun.objects.filter(pk=run.pk)
        .filter(~Q(status=StatementRun.Status.RUNNING) | Q(started_at__lt=now - STALE_RUN))
        .update(
            status=StatementRun.Status.RUNNING,
            phase=StatementRun.Phase.DOWNLOAD,
            started_at=now,
            lines_read=0,
            error="",
            timings={},
        )
    )
    run.refresh_from_db()
    return run, bool(claimed)


def _run_end(run: StatementRun, status: str, **fields: Any) -> StatementRun:
    StatementRun.objects.filter(pk=run.pk).update(
        status=status, finished_at=timezone.now(), runs=F("runs") + 1, **fields
    )
    run.refresh_from_db()
    return run


def reconcile_day(*, channel: str, day: dt.date) -> StatementRun:
    """Download the day's statement (no transaction open), compare, heal what's safe, flag the
    rest. Returns the run; its status says whether the statement was there."""
    run, claimed = _run_claim(channel, day)
    if not claimed:
        logger.info("reconciliation %s %s is already running", channel, day)
        return run
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        statement = get_gateway(channel).open_statement(day)
    except StatementNotReady as exc:
        logger.info("statement %s %s not published yet: %s", channel, day, exc)
        return _run_end(run, StatementRun.Status.NOT_READY, error=str(exc)[:500], phase="")
    except GatewayUnavailable as exc:
        logger.warning("statement %s %s not available: %s", channel, day, exc)
        return _run_end(run, StatementRun.Status.FAILED, error=str(exc)[:500], phase="")
    fetched_at = timezone.now()
    timings["download"] = round(time.monotonic() - started, 3)
    with statement:
        StatementRun.objects.filter(pk=run.pk).update(
            phase=StatementRun.Phase.STAGE, statement_bytes=statement.size, timings=timings
        )
        mark = time.monotonic()
        try:
            counts = _stage(run, statement)
        except (ValueError, GatewayUnavailable) as exc:
            _stage_drop()
            logger.warning("statement %s %s unreadable: %s", channel, day, exc)
            return _run_end(
                run, StatementRun.Status.FAILED, error=f"unreadable: {exc}"[:500], phase=""
            )
    timings["stage"] = round(time.monotonic() - mark, 3)
    StatementRun.objects.filter(pk=run.pk).update(
        phase=StatementRun.Phase.MATCH,
        payment_lines=counts["payment"],
        refund_lines=counts["refund"],
        timings=timings,
    )
    mark = time.monotonic()
    try:
        healed = _match(run, channel, day, fetched_at)
    finally:
        _stage_drop()
    timings["match"] = round(time.monotonic() - mark, 3)
    timings["total"] = round(time.monotonic() - started, 3)
    run = _run_end(
        run,
        StatementRun.Status.DONE,
        phase=StatementRun.Phase.FINISHED,
        healed=healed,
        open_findings=run.findings.filter(state=Finding.State.OPEN).count(),
        error="",
        timings=timings,
    )
    logger.info(
        "reconciled %s %s: %s payments, %s refunds, %s healed, %s open, %s",
        channel,
        day,
        run.payment_lines,
        run.refund_lines,
        run.healed,
        run.open_findings,
        timings,
    )
    return run


# --- stage: the statement into a temporary table ------------------------------------------------


def _stage(run: StatementRun, statement: StatementFile) -> dict[str, int]:
    """COPY the statement's lines into the temporary table in batches; return lines per kind."""
    counts = {"payment": 0, "refund": 0}
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS reconciliation_stage ("
            " kind char(1) NOT NULL, out_trade_no text NOT NULL, out_refund_no text NOT NULL,"
            " gateway_trade_no text NOT NULL, amount bigint NOT NULL, currency text NOT NULL,"
            " occurred_at timestamptz, settled boolean NOT NULL)"
        )
        cursor.execute("TRUNCATE reconciliation_stage")
        lines: Iterator[StatementLine] = statement.lines()
        total = 0
        while True:
            batch = itertools.islice(lines, STAGE_BATCH_LINES)
            written = 0
            with cursor.copy(
                "COPY reconciliation_stage (kind, out_trade_no, out_refund_no, gateway_trade_no,"
                " amount, currency, occurred_at, settled) FROM STDIN"
            ) as copy:
                for line in batch:
                    copy.write_row(
                        (
                            _KIND_CODE[line.kind],
                            line.out_trade_no,
                            line.out_refund_no,
                            line.gateway_trade_no,
                            line.amount,
                            line.currency,
                            line.occurred_at,
                            line.settled,
                        )
                    )
                    counts[line.kind] += 1
                    written += 1
            total += written
            if written < STAGE_BATCH_LINES:
                break
            StatementRun.objects.filter(pk=run.pk).update(lines_read=total)
        StatementRun.objects.filter(pk=run.pk).update(lines_read=total)
        cursor.execute("ANALYZE reconciliation_stage")
    return counts


def _stage_drop() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS reconciliation_stage")


# --- match: only the disagreements come back ----------------------------------------------------

# Statement payments that are not a succeeded attempt of ours with the same amount.
_PAYMENTS_DISAGREEING = """
SELECT s.out_trade_no, s.gateway_trade_no, s.amount, s.currency, s.occurred_at,
       a.id, a.status, a.amount, a.channel
FROM reconciliation_stage s
LEFT JOIN payments_paymentattempt a ON a.out_trade_no = s.out_trade_no
WHERE s.kind = 'P'
  AND (a.id IS NULL OR a.channel <> %(channel)s OR a.amount <> s.amount
       OR a.status <> 'succeeded')
"""

# Our captures of the day (known before the statement was fetched) that it does not list.
_PAYMENTS_MISSING = """
SELECT a.id, a.out_trade_no, a.amount, a.currency
FROM payments_paymentattempt a
WHERE a.channel = %(channel)s AND a.status = 'succeeded'
  AND a.paid_at >= %(start)s AND a.paid_at < %(end)s AND a.paid_at < %(fetched_at)s
  AND NOT EXISTS (
    SELECT 1 FROM reconciliation_stage s WHERE s.kind = 'P' AND s.out_trade_no = a.out_trade_no)
"""

# Statement refunds that are not a refund of ours on this channel with the same amount and a
# final state to match (a refund still processing at the gateway is left to the refund sweep).
_REFUNDS_DISAGREEING = """
SELECT s.out_trade_no, s.out_refund_no, s.amount, s.currency, s.settled,
       r.id, r.status, r.amount, a.channel, a.id
FROM reconciliation_stage s
LEFT JOIN refunds_refund r ON r.out_refund_no = s.out_refund_no
LEFT JOIN payments_paymentattempt a ON a.id = r.attempt_id
WHERE s.kind = 'R'
  AND (r.id IS NULL OR a.channel <> %(channel)s OR r.amount <> s.amount
       OR r.status = 'failed' OR (r.status = 'pending' AND s.settled))
"""

_REFUNDS_MISSING = """
SELECT r.id, r.out_refund_no, a.out_trade_no, a.id, r.amount, r.currency
FROM refunds_refund r JOIN payments_paymentattempt a ON a.id = r.attempt_id
WHERE a.channel = %(channel)s AND r.status = 'succeeded'
  AND r.succeeded_at >= %(start)s AND r.succeeded_at < %(end)s
  AND r.succeeded_at < %(fetched_at)s
  AND NOT EXISTS (
    SELECT 1 FROM reconciliation_stage s WHERE s.kind = 'R' AND s.out_refund_no = r.out_refund_no)
"""

# Captures in the statement that are not their order's paid capture and have no refund that
# could still succeed: money taken twice (or after the order closed) and kept.
_EXTRA_CAPTURES_KEPT = """
SELECT a.id, a.out_trade_no, a.amount, a.currency, o.public_id, o.status
FROM reconciliation_stage s
JOIN payments_paymentattempt a ON a.out_trade_no = s.out_trade_no AND a.channel = %(channel)s
JOIN orders_order o ON o.id = a.order_id
WHERE s.kind = 'P' AND a.status = 'succeeded' AND a.amount = s.amount
  AND o.paid_attempt_id IS DISTINCT FROM a.id
  AND NOT EXISTS (
    SELECT 1 FROM refunds_refund r WHERE r.attempt_id = a.id AND r.status <> 'failed')
"""


@dataclass
class _Tally:
    healed: int = 0


def _match(run: StatementRun, channel: str, day: dt.date, fetched_at: dt.datetime) -> int:
    start, end = statement_day_bounds(day)
    params = {"channel": channel, "start": start, "end": end, "fetched_at": fetched_at}
    tally = _Tally()
    # Heal first: a capture fed to the decision service may start a refund, which the extra
    # capture check below must then see.
    for row in list_batches(_PAYMENTS_DISAGREEING, params):
        _payment_disagreement(run, row, tally)
    for attempt_id, out_trade_no, amount, currency in list_batches(_PAYMENTS_MISSING, params):
        _finding(
            run,
            Finding.Kind.MISSING_AT_GATEWAY,
            Finding.State.OPEN,
            out_trade_no=out_trade_no,
            attempt_id=attempt_id,
            local_amount=amount,
            currency=currency,
            detail="succeeded here; the gateway's statement lacks it",
        )
    for row in list_batches(_REFUNDS_DISAGREEING, params):
        _refund_disagreement(run, row, tally)
    for _, out_refund_no, out_trade_no, attempt_id, amount, currency in list_batches(
        _REFUNDS_MISSING, params
    ):
        _finding(
            run,
            Finding.Kind.REFUND_MISSING_AT_GATEWAY,
            Finding.State.OPEN,
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
            attempt_id=attempt_id,
            local_amount=amount,
            currency=currency,
            detail="refund succeeded here; the gateway's statement lacks it",
        )
    for attempt_id, out_trade_no, amount, currency, order_id, order_status in list_batches(
        _EXTRA_CAPTURES_KEPT, params
    ):
        _finding(
            run,
            Finding.Kind.DUPLICATE_CAPTURE,
            Finding.State.OPEN,
            out_trade_no=out_trade_no,
            attempt_id=attempt_id,
            gateway_amount=amount,
            local_amount=amount,
            currency=currency,
            detail=f"order {order_id} ({order_status}) was paid by another capture or "
            "closed; no refund of this one is pending or done",
        )
    return tally.healed


def list_batches(sql: str, params: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """Disagreements in batches. A batch is read whole before it is acted on, so healing
    (which opens its own transactions) never interleaves with an open fetch."""
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(MATCH_BATCH_ROWS):
            yield from list(rows)


_HEALED_DETAIL = {
    Decision.PAID: "capture recorded from the statement; the order is paid",
    Decision.REVIVED: "capture recorded from the statement; the expired order is paid again",
    Decision.DUPLICATE: "capture recorded from the statement; a duplicate, refund started",
    Decision.LATE: "capture recorded from the statement; the order had closed, refund started",
}


def _payment_disagreement(run: StatementRun, row: tuple[Any, ...], tally: _Tally) -> None:
    out_trade_no, trade_no, amount, currency, occurred_at, attempt_id, status, ours, channel = row
    if attempt_id is None or channel != run.channel:
        _finding(run, Finding.Kind.UNKNOWN_TRADE, Finding.State.OPEN,
                 out_trade_no=out_trade_no, gateway_amount=amount, currency=currency,
                 detail=f"gateway trade {trade_no}: no {run.channel} attempt of ours")  # fmt: skip
        return
    about = {
        "out_trade_no": out_trade_no, "attempt_id": attempt_id, "gateway_amount": amount,
        "local_amount": ours, "currency": currency,
    }  # fmt: skip
    if amount != ours:
        detail = f"the statement says {amount}, our attempt {ours} ({status})"
        _finding(run, Finding.Kind.AMOUNT_MISMATCH, Finding.State.OPEN, detail=detail, **about)
        return
    trade = TradeStatus(
        outcome=TradeOutcome.PAID,
        out_trade_no=out_trade_no,
        gateway_trade_no=trade_no,
        amount=amount,
        currency=currency,
        paid_at=occurred_at,
    )
    try:
        with order_lock(_order_of(attempt_id)):
            decision = attempt_apply_trade_status(
                attempt_id=attempt_id, status=trade, source="reconciliation"
            )
    except OrderBusy:
        logger.warning("reconciliation: order of %s busy; the next run heals it", out_trade_no)
        return
    healed = _HEALED_DETAIL.get(decision)
    if healed is None:
        return  # someone else recorded it meanwhile: nothing was wrong by the time we looked
    tally.healed += 1
    detail = f"{healed} (was {status})"
    _finding(run, Finding.Kind.NOT_RECORDED, Finding.State.HEALED, detail=detail, **about)


def _order_of(attempt_id: int) -> int:
    from payments.models import PaymentAttempt

    return int(PaymentAttempt.objects.values_list("order_id", flat=True).get(pk=attempt_id))


def _refund_disagreement(run: StatementRun, row: tuple[Any, ...], tally: _Tally) -> None:
    (out_trade_no, out_refund_no, amount, currency, settled,
     refund_id, status, ours, channel, attempt_id) = row  # fmt: skip
    about = {
        "out_trade_no": out_trade_no, "out_refund_no": out_refund_no, "attempt_id": attempt_id,
        "gateway_amount": amount, "local_amount": ours, "currency": currency,
    }  # fmt: skip
    kind, state = Finding.Kind.REFUND_NOT_RECORDED, Finding.State.OPEN
    if refund_id is None or channel != run.channel:
        about |= {"attempt_id": None, "local_amount": None}
        detail = f"no {run.channel} refund of ours with this number"
    elif amount != ours:
        kind = Finding.Kind.REFUND_AMOUNT_MISMATCH
        detail = f"the statement says {amount}, our refund {ours} ({status})"
    elif status == "failed":
        detail = "the gateway refunded it; our refund is marked failed"
    elif settled and refund_apply_result(out_refund_no=out_refund_no, outcome="succeeded"):
        tally.healed += 1
        state, detail = Finding.State.HEALED, "refund success recorded from the statement"
    else:
        return  # still processing at the gateway, or recorded by someone else meanwhile
    _finding(run, kind, state, detail=detail, **about)


def _finding(run: StatementRun, kind: str, state: str, **fields: Any) -> None:
    """One finding per cause: created once; a later run may only move it from open to healed."""
    key = {
        "out_trade_no": fields.pop("out_trade_no", ""),
        "out_refund_no": fields.pop("out_refund_no", ""),
    }
    finding, created = Finding.objects.get_or_create(
        run=run, kind=kind, **key, defaults={"state": state, **fields}
    )
    if created:
        metrics.reconciliation_finding(channel=run.channel, kind=kind, state=state)
    if not created and finding.state == Finding.State.OPEN and state == Finding.State.HEALED:
        Finding.objects.filter(pk=finding.pk).update(state=state, **fields)


def finding_acknowledge(*, finding_id: int, user_id: int, note: str) -> bool:
    """Ops looked at an open finding and say what they found; who and when are kept."""
    return bool(
        Finding.objects.filter(pk=finding_id, state=Finding.State.OPEN).update(
            state=Finding.State.RESOLVED,
            resolved_by_id=user_id,
            resolved_at=timezone.now(),
            note=note.strip(),
        )
    )
