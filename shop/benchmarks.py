"""Benchmarks: figures, never assertions. Each scenario is measured against a floor run in the
same process on the same database: the same SQL issued straight through one psycopg connection,
so the ratio says what our code (ORM, Redis lock, checks) costs on top of the database work it
cannot avoid. Single caller, sequential calls: latencies are per call.

Floors: a unique capture = dedupe insert of the event, lock order and attempt rows, update both,
insert the outbox row, in one transaction; a duplicate = ``INSERT … ON CONFLICT DO NOTHING``; a
claim = ``SELECT … FOR UPDATE SKIP LOCKED`` plus the lease update.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from orders.locks import order_lock
from orders.models import Order
from payments.decision import attempt_apply_trade_status
from payments.events import event_record
from payments.gateways.base import TradeOutcome, TradeStatus
from payments.models import GatewayEvent, PaymentAttempt
from payments.polling import _claim_due
from shop import metrics


@dataclass
class Figure:
    name: str
    count: int
    seconds: float
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def timed(name: str, items: list[int], step: Callable[[int], object]) -> Figure:
    latencies = []
    started = time.perf_counter()
    for item in items:
        t0 = time.perf_counter()
        step(item)
        latencies.append(time.perf_counter() - t0)
    return Figure(name, len(items), time.perf_counter() - started, latencies)


def make_attempts(count: int, *, due: bool = False) -> list[int]:
    """Orders with one paying attempt each, inserted in bulk (setup, not measured)."""
    now = timezone.now()
    orders = Order.objects.bulk_create(
        Order(
            email="bench@example.com",
            total_amount=1000,
            currency="CNY",
            expires_at=now + dt.timedelta(hours=1),
        )
        for _ in range(count)
    )
    attempts = PaymentAttempt.objects.bulk_create(
        PaymentAttempt(
            order=order,
            channel="wechat",
            client="pc",
            amount=1000,
            currency="CNY",
            status="paying",
            out_trade_no="BN" + uuid.uuid4().hex[:24].upper(),
            next_poll_at=now if due else None,
        )
        for order in orders
    )
    return [a.pk for a in attempts]


def _paid(attempt_id: int) -> TradeStatus:
    return TradeStatus(outcome=TradeOutcome.PAID, out_trade_no=str(attempt_id), amount=1000)


def process_callback(attempt_id: int) -> None:
    """What a callback does once its signature checked out: store the event (deduplicated by its
    notification id), skip it if already applied, else decide under the order lock."""
    event = event_record(
        channel="wechat", kind="notification", event_id=f"EV-{attempt_id}", out_trade_no="x"
    )
    if event.processed_at is not None:
        metrics.callback_received(channel="wechat", outcome="duplicate")
        return
    with order_lock(PaymentAttempt.objects.values_list("order_id", flat=True).get(pk=attempt_id)):
        attempt_apply_trade_status(attempt_id=attempt_id, status=_paid(attempt_id), source="bench")
    GatewayEvent.objects.filter(pk=event.pk).update(processed_at=timezone.now())
    metrics.callback_received(channel="wechat", outcome="verified", reason="trade")


def callback_outcomes() -> str:
    """This process's callback outcomes as ``/metrics`` counts them (``shop.metrics``)."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    counted = metrics.figures(generate_latest(registry).decode())["callbacks"]
    return ", ".join(f"{k} {v}" for k, v in counted.items()) or "none"


def floor_decide(attempt_id: int) -> None:
    """The SQL a capture cannot do without: lock both rows, update both, write the outbox row."""
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO payments_gatewayevent (channel, kind, event_id, out_trade_no, outcome,"
            " verified, rejection, headers, body, payload, deliveries, created_at)"
            " VALUES ('wechat', 'notification', %s, '', '', true, '', '{}', '', '', 1, now())"
            " ON CONFLICT DO NOTHING",
            [f"EV-{attempt_id}"],
        )
        cur.execute("BEGIN")
        cur.execute("SELECT order_id FROM payments_paymentattempt WHERE id = %s", [attempt_id])
        order_id = cur.fetchone()[0]
        cur.execute("SELECT id FROM orders_order WHERE id = %s FOR UPDATE", [order_id])
        cur.execute("SELECT id FROM payments_paymentattempt WHERE id = %s FOR UPDATE", [attempt_id])
        cur.execute(
            "UPDATE payments_paymentattempt SET status = 'succeeded', version = version + 1,"
            " captured_amount = amount, paid_at = now() WHERE id = %s AND status = 'paying'",
            [attempt_id],
        )
        cur.execute(
            "UPDATE orders_order SET status = 'paid', paid_at = now(), paid_attempt_id = %s"
            " WHERE id = %s AND status = 'unpaid'",
            [attempt_id, order_id],
        )
        cur.execute(
            "INSERT INTO shop_outboxevent (event_id, topic, payload, status, deliveries,"
            " next_attempt_at, last_error, created_at) VALUES (%s, 'order.paid', '{}', 'pending',"
            " 0, now(), '', now())",
            [uuid.uuid4()],
        )
        cur.execute("COMMIT")


def floor_duplicate(attempt_id: int) -> None:
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO payments_gatewayevent (channel, kind, event_id, out_trade_no, outcome,"
            " verified, rejection, headers, body, payload, deliveries, created_at)"
            " VALUES ('wechat', 'notification', %s, '', '', true, '', '{}', '', '', 1, now())"
            " ON CONFLICT DO NOTHING",
            [f"EV-{attempt_id}"],
        )


def claims(batch: int) -> int:
    return len(_claim_due(batch))


def floor_claims(batch: int) -> int:
    with connection.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(
            "SELECT id FROM payments_paymentattempt WHERE status IN ('created','paying',"
            "'needs_attention','closed') AND next_poll_at <= now() ORDER BY next_poll_at"
            " LIMIT %s FOR UPDATE SKIP LOCKED",
            [batch],
        )
        ids = [row[0] for row in cur.fetchall()]
        if ids:
            cur.execute(
                "UPDATE payments_paymentattempt SET next_poll_at = now() + interval '60 seconds'"
                " WHERE id = ANY(%s)",
                [ids],
            )
        cur.execute("COMMIT")
    return len(ids)


def drain(claim: Callable[[int], int], batch: int) -> Figure:
    latencies = []
    total = 0
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        got = claim(batch)
        latencies.append(time.perf_counter() - t0)
        total += got
        if not got:
            break
    return Figure("claims", total, time.perf_counter() - started, latencies)


def run_all(count: int, write: Callable[[str], None]) -> None:
    def report(ours: Figure, floor: Figure) -> None:
        write(
            f"{ours.name:<40} {ours.per_second:>9.0f}/s  p50 {ours.percentile(0.5):6.2f} ms"
            f"  p99 {ours.percentile(0.99):6.2f} ms   floor {floor.per_second:>9.0f}/s"
            f"  ratio {ours.per_second / floor.per_second if floor.per_second else 0:5.2f}"
        )

    write(f"{count} items per scenario; ratio = ours / floor (1.00 = the bare SQL's speed)")
    ids = make_attempts(count)
    ours = timed("capture callbacks, unique", ids, process_callback)
    floor = timed("floor", make_attempts(count), floor_decide)
    report(ours, floor)

    # 90 % duplicates: re-deliveries of captures already applied, 10 % new ones.
    fresh = make_attempts(count // 10)
    mixed = [ids[i % len(ids)] for i in range(count - len(fresh))] + fresh
    ours = timed("capture callbacks, 90% duplicates", mixed, process_callback)
    floor = timed("floor", mixed, floor_duplicate)
    report(ours, floor)
    write(f"  callback outcomes counted by oncepay_callbacks_total: {callback_outcomes()}")

    make_attempts(count, due=True)
    ours = drain(claims, 10)
    ours.name = "poll sweep claims (batches of 10)"
    PaymentAttempt.objects.update(next_poll_at=timezone.now())
    floor = drain(floor_claims, 10)
    report(ours, floor)
