"""Sweeps over big tables, each next to the bare SQL that does the same work.

``poll-sweep``: the poll claim (``payments.polling._claim_due``) drained over 100,000 and
1,000,000 live attempts of which 1 % are due, its query plan at both sizes, and what a lease
write costs the table's indexes (HOT or not).

``expiry-sweep``: the production expiry sweep (``payments.expiry.expire_orders_sweep``) run until
100,000 expired unpaid orders are closed; then again with 10 % of them holding a live attempt
whose close goes to a gateway (an in-process one that answers "closed": no network).

Tables are filled with set-based SQL (``generate_series``) while their secondary indexes are
dropped and their foreign-key triggers off, then indexed, vacuumed and analysed: a million
attempts load in well under a minute. Loading is never measured.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.test.utils import override_settings
from django.utils import timezone

from payments import expiry, polling
from payments.gateways.base import CloseOutcome, CloseResult
from payments.models import UNSETTLED_STATUSES, WATCHED_STATUSES
from shop.bench.core import Measure, Row, Write, peak_rss_self_mb, table

ATTEMPTS = "payments_paymentattempt"
DUE_EVERY = 100  # one attempt in a hundred is due: 1 %


def _check_scratch() -> None:
    """These scenarios empty tables: refuse anything but a database ``manage.py bench`` made."""
    name = str(connection.settings_dict["NAME"])
    if not name.startswith("oncepay_bench_"):
        raise RuntimeError(f"sweep benchmarks run on a bench scratch database, not {name!r}")


@contextlib.contextmanager
def _bulk_load(*tables: str) -> Iterator[Any]:
    """Empty ``tables`` (and every table that refers to them) and yield a cursor to fill them:
    meanwhile their secondary indexes are dropped (built again afterwards, as they were) and,
    for a superuser, foreign-key triggers are off (the caller's rows are consistent by
    construction). The tables are vacuumed and analysed at the end: name every table the
    caller fills, or the planner meets it without statistics."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
            " WHERE i.indrelid = ANY(%s::regclass[])"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            [list(tables)],
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        superuser = bool(cursor.fetchone()[0])
        if superuser:
            cursor.execute("SET session_replication_role = replica")
        try:
            yield cursor
        finally:
            if superuser:
                cursor.execute("RESET session_replication_role")
            cursor.execute("SET maintenance_work_mem = '256MB'")
            for _, definition in indexes:
                cursor.execute(definition)
            cursor.execute("RESET maintenance_work_mem")
        for name in tables:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'),"  # noqa: S608 (ours)
                f" greatest(1, (SELECT max(id) FROM {name})))"
            )
            cursor.execute(f"VACUUM ANALYZE {name}")


def _drain(claim: Callable[[], int]) -> Measure:
    """Call ``claim`` until it claims nothing; count what it claimed, time each call that did."""
    latencies = []
    count = 0
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        claimed = claim()
        if not claimed:
            break
        latencies.append(time.perf_counter() - t0)
        count += claimed
    return Measure(count, time.perf_counter() - started, latencies, peak_rss_self_mb())


# --- poll sweep ---------------------------------------------------------------------------------

# Orders and their one live attempt each; attempt ids with ``id % DUE_EVERY = 0`` are due, spread
# over the last ten minutes, the rest due from half an hour on (well after the run ends).
_LOAD_ORDERS = """
INSERT INTO orders_order (id, public_id, email, status, total_amount, currency, owner_key,
    expires_at, close_reason, created_at, updated_at)
SELECT g, 'ordb' || lpad(g::text, 12, '0'), 'bench@example.com', 'unpaid', 1000, 'CNY', '',
    %(now)s + interval '1 hour', '', %(now)s, %(now)s
FROM generate_series(1, %(count)s) g
"""
_DUE_AT = """CASE WHEN {id} %% {every} = 0
    THEN %(now)s - ({id} %% 599 + 1) * interval '1 second'
    ELSE %(now)s + interval '30 minutes' + ({id} %% 3600) * interval '1 second' END"""
_LOAD_ATTEMPTS = f"""
INSERT INTO {ATTEMPTS} (id, public_id, order_id, channel, client, out_trade_no, amount,
    currency, status, version, action, gateway_trade_no, captured_amount, next_poll_at,
    poll_step, last_error, last_outcome, attention_reason, created_at, updated_at)
SELECT g, 'payb' || lpad(g::text, 12, '0'), g, CASE WHEN g %% 2 = 0 THEN 'wechat' ELSE 'alipay' END,
    'pc', 'BN' || lpad(g::text, 24, '0'), 1000, 'CNY', 'paying', 1, '{{}}', '', 0,
    {_DUE_AT.format(id="g", every=DUE_EVERY)}, 0, '', '', '', %(now)s, %(now)s
FROM generate_series(1, %(count)s) g
"""  # noqa: S608 (constants only)
_RESET_DUE = f"""
UPDATE {ATTEMPTS} SET next_poll_at = {_DUE_AT.format(id="id", every=DUE_EVERY)}
WHERE id %% {DUE_EVERY} = 0
"""  # noqa: S608 (constants only)

# The floor: the bare claim on the same partial index, and the lease, in one statement.
_FLOOR_CLAIM = f"""
UPDATE {ATTEMPTS} AS attempt SET next_poll_at = %(lease)s
FROM (
    SELECT id FROM {ATTEMPTS} WHERE next_poll_at <= %(now)s
    ORDER BY next_poll_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED
) AS due
WHERE attempt.id = due.id
RETURNING attempt.id
"""  # noqa: S608 (constants only)


def _load_attempts(count: int, now: dt.datetime) -> None:
    with _bulk_load("orders_order", ATTEMPTS) as cursor:
        cursor.execute(_LOAD_ORDERS, {"now": now, "count": count})
        cursor.execute(_LOAD_ATTEMPTS, {"now": now, "count": count})


def _reset_due(now: dt.datetime) -> None:
    """Make the due rows due again, as loaded, and vacuum away what the drain left."""
    with connection.cursor() as cursor:
        cursor.execute(_RESET_DUE, {"now": now})
        cursor.execute(f"VACUUM ANALYZE {ATTEMPTS}")


def _claim_params() -> dict[str, Any]:
    return {
        "statuses": [str(s) for s in WATCHED_STATUSES],
        "now": timezone.now(),
        "batch": polling.CLAIM_BATCH,
        "bound": polling._query_bound(),
    }


def _floor_claim() -> int:
    now = timezone.now()
    lease = now + dt.timedelta(seconds=polling._query_bound() * polling.CLAIM_BATCH)
    raw = connection.connection  # the bare driver connection, in autocommit like ours
    with raw.cursor() as cursor:
        cursor.execute(_FLOOR_CLAIM, {"now": now, "lease": lease, "batch": polling.CLAIM_BATCH})
        return len(cursor.fetchall())


def _explain_claim() -> list[str]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of our claim statement, in a transaction rolled back."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + polling._CLAIM_DUE, _claim_params())
        lines = [row[0] for row in cursor.fetchall()]
        transaction.set_rollback(True)
    return lines


@dataclass
class PlanFigures:
    index_rows: int  # rows the scan of the due index returned
    index_buffers: int  # buffers that scan touched
    total_buffers: int  # buffers the whole statement touched (the update's index writes too)


def _buffers(line: str) -> int:
    return sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", line))


def _plan_figures(plan: list[str]) -> PlanFigures:
    total = next(_buffers(line) for line in plan if "Buffers:" in line)
    for i, line in enumerate(plan):
        if re.search(r"Scan using|Seq Scan", line):  # the first scan: the due rows' (in the CTE)
            rows = int(re.search(r"actual time=\S+ rows=(\d+)", line).group(1))  # type: ignore[union-attr]
            buffers = next(_buffers(x) for x in plan[i + 1 :] if "Buffers:" in x)
            return PlanFigures(rows, buffers, total)
    return PlanFigures(-1, -1, total)


def _flushed_stats() -> None:
    """Make this backend's table and index counters visible in ``pg_stat_*`` now."""
    with connection.cursor() as cursor:
        try:
            cursor.execute("SELECT pg_stat_force_next_flush()")  # PostgreSQL 15+
        except Exception:
            time.sleep(1.1)  # older servers flush at most once a second
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")


@dataclass
class WriteCounters:
    updates: int
    hot_updates: int
    index_blocks: dict[str, int]

    def since(self, before: WriteCounters) -> WriteCounters:
        return WriteCounters(
            self.updates - before.updates,
            self.hot_updates - before.hot_updates,
            {k: v - before.index_blocks.get(k, 0) for k, v in self.index_blocks.items()},
        )


def _write_counters() -> WriteCounters:
    _flushed_stats()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = %s",
            [ATTEMPTS],
        )
        updates, hot = cursor.fetchone()
        cursor.execute(
            "SELECT indexrelname, coalesce(idx_blks_hit, 0) + coalesce(idx_blks_read, 0)"
            " FROM pg_statio_user_indexes WHERE relname = %s",
            [ATTEMPTS],
        )
        blocks = dict(cursor.fetchall())
    return WriteCounters(updates, hot, blocks)


def _indexes_with_next_poll_at() -> list[str]:
    """Indexes on the attempts table whose key, expression or predicate names next_poll_at:
    an update that changes next_poll_at cannot be HOT while any exists."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass"
            " AND pg_get_indexdef(indexrelid) ~ 'next_poll_at'",
            [ATTEMPTS],
        )
        return [row[0] for row in cursor.fetchall()]


def _table_pages() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT relpages FROM pg_class WHERE oid = %s::regclass", [ATTEMPTS])
        return int(cursor.fetchone()[0])


def run_poll(*, tiny: bool, write: Write) -> None:
    _check_scratch()
    sizes = (1_000, 5_000) if tiny else (100_000, 1_000_000)
    rows: list[Row] = []
    details: list[str] = []
    for size in sizes:
        due = size // DUE_EVERY
        now = timezone.now()
        started = time.perf_counter()
        _load_attempts(size, now)
        loaded = time.perf_counter() - started
        plan = _explain_claim()
        figures = _plan_figures(plan)
        pages = _table_pages()

        # A drain of ours first, unmeasured: warm caches, and both measured sides then start
        # from the same state (due rows reset, table vacuumed).
        _drain(lambda: len(polling._claim_due(polling.CLAIM_BATCH)))
        _reset_due(now)
        before = _write_counters()
        ours = _drain(lambda: len(polling._claim_due(polling.CLAIM_BATCH)))
        lease_writes = _write_counters().since(before)
        after_drain = _explain_claim()  # nothing due now: what an empty claim costs
        _reset_due(now)
        floor = _drain(_floor_claim)

        ours.errors = abs(ours.count - due)
        floor.errors = abs(floor.count - due)
        rows.append(
            Row(
                f"claim, {size:,} attempts, {due:,} due",
                ours,
                floor,
                f"batch {polling.CLAIM_BATCH}; each side drained the same due rows until none was"
                " left, from the same state (due rows reset, table vacuumed; ours drained once"
                f" before, unmeasured); loaded in {loaded:.1f} s (not measured)",
            )
        )
        empty = _plan_figures(after_drain)
        details += [
            f"-- plan of our claim at {size:,} attempts ({due:,} due, table {pages:,} pages):",
            *(f"    {line}" for line in plan),
            f"-- at {size:,} attempts: the due-index scan returned {figures.index_rows} rows"
            f" touching {figures.index_buffers} buffers; the whole claim touched"
            f" {figures.total_buffers} buffers (the lease writes a new entry into every index);"
            f" an empty claim right after the drain touched {empty.total_buffers} buffers",
            f"-- lease writes during our drain at {size:,}: {lease_writes.updates:,} updates,"
            f" {lease_writes.hot_updates:,} HOT; index blocks touched: "
            + ", ".join(
                f"{name} {blocks:,}"
                for name, blocks in sorted(lease_writes.index_blocks.items(), key=lambda x: -x[1])
            ),
        ]
    indexed = _indexes_with_next_poll_at()
    index_count = len(_write_counters().index_blocks)
    table(f"poll sweep: claim due attempts (batch {polling.CLAIM_BATCH})", rows, write)
    for line in details:
        write(line)
    write(
        f"-- next_poll_at is in {', '.join(indexed) or 'no index'}: a lease write changes an"
        " indexed column, so it is never a HOT update and writes a new entry into each of the"
        f" table's {index_count} indexes"
    )


# --- expiry sweep -------------------------------------------------------------------------------

PRODUCTS = 100
PRODUCT_STOCK = 1_000_000
PRICE = 500
# Each order: one of product a (quantity 1) and two of product b.
_LOAD_PRODUCTS = f"""
INSERT INTO shop_product (id, sku, name, price_amount, currency, stock, is_active, created_at,
    updated_at)
SELECT g, 'BENCH' || g, 'Bench product ' || g, {PRICE}, 'CNY', {PRODUCT_STOCK}, true,
    %(now)s, %(now)s
FROM generate_series(1, {PRODUCTS}) g
"""  # noqa: S608 (constants only)
_LOAD_EXPIRED_ORDERS = f"""
INSERT INTO orders_order (id, public_id, email, status, total_amount, currency, owner_key,
    expires_at, close_reason, created_at, updated_at)
SELECT g, 'ordx' || lpad(g::text, 12, '0'), 'bench@example.com', 'unpaid', {3 * PRICE}, 'CNY', '',
    %(now)s - interval '1 hour' + g * interval '1 millisecond', '',
    %(now)s - interval '2 hours', %(now)s - interval '2 hours'
FROM generate_series(1, %(count)s) g
"""  # noqa: S608 (constants only)
_LOAD_LINES = f"""
INSERT INTO orders_orderline (id, order_id, product_id, sku, name, unit_price, quantity,
    line_total)
SELECT 2 * g - 1 + k, g, product, 'BENCH' || product, 'Bench product ' || product, {PRICE},
    k + 1, {PRICE} * (k + 1)
FROM generate_series(1, %(count)s) g, generate_series(0, 1) k,
    LATERAL (SELECT (g + 49 * k) %% {PRODUCTS} + 1 AS product) p
"""  # noqa: S608 (constants only)
_LOAD_LIVE_ATTEMPTS = f"""
INSERT INTO {ATTEMPTS} (id, public_id, order_id, channel, client, out_trade_no, amount,
    currency, status, version, action, gateway_trade_no, captured_amount, next_poll_at,
    poll_step, last_error, last_outcome, attention_reason, created_at, updated_at)
SELECT g, 'payx' || lpad(g::text, 12, '0'), g,
    CASE WHEN g %% 20 = 0 THEN 'wechat' ELSE 'alipay' END, 'pc', 'BX' || lpad(g::text, 24, '0'),
    {3 * PRICE}, 'CNY', 'paying', 1, '{{}}', '', 0,
    %(now)s + interval '30 minutes', 3, '', 'not_paid', '', %(now)s - interval '2 hours',
    %(now)s - interval '2 hours'
FROM generate_series(%(every)s, %(count)s, %(every)s) g
"""  # noqa: S608 (constants only)

# The floor, one statement per batch: lock a batch of expired unpaid orders (skipping locked
# rows), close the unsettled attempts among them (audit row, close answer row), then close the
# orders that have none left: order update, audit row, outbox event, stock back.
_FLOOR_CLOSE_ATTEMPTS = f"""
WITH due AS (
    SELECT id FROM orders_order
    WHERE status = 'unpaid' AND expires_at <= %(now)s
    ORDER BY expires_at LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), closed AS (
    UPDATE {ATTEMPTS} AS a SET status = 'closed', closed_at = %(now)s, next_poll_at = NULL,
        last_outcome = 'closed', version = a.version + 1, updated_at = %(now)s
    FROM due WHERE a.order_id = due.id AND a.status = ANY(%(unsettled)s)
    RETURNING a.id, a.order_id, a.channel, a.out_trade_no
), audit AS (
    INSERT INTO payments_statechange (entity, order_id, attempt_id, from_status, to_status,
        transition, cause, detail, created_at)
    SELECT 'attempt', order_id, id, 'paying', 'closed', 'attempt_close', 'expired', '', %(now)s
    FROM closed
)
INSERT INTO payments_gatewayevent (channel, kind, out_trade_no, attempt_id, outcome, verified,
    rejection, headers, body, payload, deliveries, created_at)
SELECT channel, 'close', out_trade_no, id, 'closed', false, '', '{{}}', '', '', 1, %(now)s
FROM closed
"""  # noqa: S608 (constants only)
_FLOOR_CLOSE_ORDERS = f"""
WITH due AS (
    SELECT o.id FROM orders_order o
    WHERE o.status = 'unpaid' AND o.expires_at <= %(now)s
        AND NOT EXISTS (SELECT 1 FROM {ATTEMPTS} a
                        WHERE a.order_id = o.id AND a.status = ANY(%(unsettled)s))
    ORDER BY o.expires_at LIMIT %(batch)s
    FOR UPDATE OF o SKIP LOCKED
), closed AS (
    UPDATE orders_order AS o SET status = 'closed', closed_at = %(now)s,
        close_reason = 'expired', updated_at = %(now)s
    FROM due WHERE o.id = due.id
    RETURNING o.id, o.public_id
), audit AS (
    INSERT INTO payments_statechange (entity, order_id, attempt_id, from_status, to_status,
        transition, cause, detail, created_at)
    SELECT 'order', c.id, (SELECT a.id FROM {ATTEMPTS} a WHERE a.order_id = c.id
                           ORDER BY a.created_at DESC LIMIT 1),
        'unpaid', 'closed', 'order_close', 'expired', 'expired', %(now)s
    FROM closed c
), outbox AS (
    INSERT INTO shop_outboxevent (event_id, topic, payload, status, deliveries,
        next_attempt_at, last_error, created_at)
    SELECT gen_random_uuid(), 'order.closed',
        jsonb_build_object('order_id', c.public_id, 'reason', 'expired',
                           'closed_at', %(closed_at)s::text),
        'pending', 0, %(now)s, '', %(now)s
    FROM closed c
), stock AS (
    UPDATE shop_product AS p SET stock = p.stock + released.quantity
    FROM (SELECT l.product_id, sum(l.quantity) AS quantity
          FROM orders_orderline l JOIN closed c ON c.id = l.order_id
          GROUP BY l.product_id) AS released
    WHERE p.id = released.product_id
)
SELECT count(*) FROM closed
"""  # noqa: S608 (constants only)


def _load_expired(count: int, live_every: int | None, now: dt.datetime) -> None:
    tables = ("shop_product", "orders_order", "orders_orderline", ATTEMPTS, "shop_outboxevent")
    with _bulk_load(*tables) as cursor:
        params = {"now": now, "count": count}
        cursor.execute(_LOAD_PRODUCTS, params)
        cursor.execute(_LOAD_EXPIRED_ORDERS, params)
        cursor.execute(_LOAD_LINES, params)
        if live_every:
            cursor.execute(_LOAD_LIVE_ATTEMPTS, {**params, "every": live_every})


def _floor_expire() -> int:
    now = timezone.now()
    params = {
        "now": now,
        "closed_at": now.isoformat(),
        "batch": settings.SWEEP_BATCH_SIZE,
        "unsettled": [str(s) for s in UNSETTLED_STATUSES],
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_FLOOR_CLOSE_ATTEMPTS, params)
        cursor.execute(_FLOOR_CLOSE_ORDERS, params)
        return int(cursor.fetchone()[0])


def _ours_expire() -> int:
    closed = expiry.expire_orders_sweep()
    if closed:
        return closed
    # A sweep that closed nothing: done if nothing expired is left, else stuck (a failure).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM orders_order WHERE status = 'unpaid' AND expires_at <= now()"
        )
        left = int(cursor.fetchone()[0])
    if left:
        raise RuntimeError(f"the expiry sweep closed nothing with {left} expired orders left")
    return 0


def _expiry_books(count: int, live: int) -> list[str]:
    """What closing every order must have left behind; each line is one check that failed."""
    expected = {
        "closed orders": count,
        "order_close audit rows": count,
        "order.closed outbox events": count,
        "stock released": 3 * count,
        "closed attempts": live,
        "attempt_close audit rows": live,
        "close answers recorded": live,
    }
    queries = {
        "closed orders": "SELECT count(*) FROM orders_order WHERE status = 'closed'"
        " AND close_reason = 'expired' AND closed_at IS NOT NULL",
        "order_close audit rows": "SELECT count(DISTINCT order_id) FROM payments_statechange"
        " WHERE entity = 'order' AND transition = 'order_close' AND to_status = 'closed'",
        "order.closed outbox events": "SELECT count(DISTINCT payload->>'order_id')"
        " FROM shop_outboxevent WHERE topic = 'order.closed'",
        "stock released": f"SELECT sum(stock) - {PRODUCTS * PRODUCT_STOCK}"  # noqa: S608
        " FROM shop_product",
        "closed attempts": f"SELECT count(*) FROM {ATTEMPTS}"  # noqa: S608 (constants only)
        " WHERE status = 'closed'",
        "attempt_close audit rows": "SELECT count(*) FROM payments_statechange"
        " WHERE entity = 'attempt' AND transition = 'attempt_close'",
        "close answers recorded": "SELECT count(*) FROM payments_gatewayevent"
        " WHERE kind = 'close' AND outcome = 'closed'",
    }
    failed = []
    with connection.cursor() as cursor:
        for what, query in queries.items():
            cursor.execute(query)
            found = int(cursor.fetchone()[0] or 0)
            if found != expected[what]:
                failed.append(f"{what}: {found:,}, expected {expected[what]:,}")
    return failed


class ClosingGateway:
    """An in-process gateway for the expiry benchmark: every close answers "closed" at once,
    so the sweep's path to the gateway is measured without any network."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def close(self, out_trade_no: str) -> CloseResult:
        return CloseResult(outcome=CloseOutcome.CLOSED, raw=f'{{"closed": "{out_trade_no}"}}')


def closing_gateway(config: Mapping[str, Any]) -> ClosingGateway:
    return ClosingGateway(str(config["CHANNEL"]))


def _closing_gateways() -> dict[str, dict[str, str]]:
    return {
        channel: {**config, "BACKEND": f"{__name__}.closing_gateway", "CHANNEL": channel}
        for channel, config in settings.PAYMENT_GATEWAYS.items()
    }


def run_expiry(*, tiny: bool, write: Write) -> None:
    _check_scratch()
    count = 1_000 if tiny else 100_000
    batch = settings.SWEEP_BATCH_SIZE
    rows = []
    for live_every in (None, 10):
        live = count // live_every if live_every else 0
        sides: dict[str, Measure] = {}
        failures: list[str] = []
        for side, sweep in (("ours", _ours_expire), ("floor", _floor_expire)):
            _load_expired(count, live_every, timezone.now())
            with override_settings(PAYMENT_GATEWAYS=_closing_gateways()):
                sides[side] = _drain(sweep)
            problems = _expiry_books(count, live)
            sides[side].errors = len(problems)
            failures += [f"{side}: {p}" for p in problems]
        # Kept within the table's 44-character name column.
        name = f"expire {count:,} orders, " + (
            f"{100 // live_every} % live attempts" if live_every else "no attempts"
        )
        note = (
            f"sweep batch {batch} (SWEEP_BATCH_SIZE); the floor is two statements per batch of"
            f" {batch} in one transaction (close the batch's unsettled attempts with their audit"
            " and close-answer rows; close the orders with their audit rows, outbox events and"
            " stock release)"
        )
        if live:
            note += "; gateway: in-process, answers closed (no network)"
        note += "; books checked: " + ("; ".join(failures) if failures else "all as expected")
        rows.append(Row(name, sides["ours"], sides["floor"], note))
    table("expiry sweep: close expired unpaid orders until none is left", rows, write)
