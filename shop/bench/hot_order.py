"""``hot-order``: many requests on one order at once, over real HTTP, against the sandbox gateway.

The shop is served exactly as ``scripts/run`` serves it (gunicorn, ``gunicorn.conf.py``, the same
workers and threads) and pointed at a sandbox gateway started for the run (``manage.py
run_sandbox``), both on free ports. Three tables:

- the floor: uncontended apply-pays, one after another (a new attempt on a fresh order each time,
  on one channel and client or alternating them; a switch on one order; a reuse);
- a burst of concurrent apply-pays on one order, mixed channels and clients, released together
  by a barrier: latency, answers, and from the database and the sandbox's ledger how many gateway
  trades the burst opened and how many are live at the end (at most one, invariant 4);
- a burst of concurrent success notifications for one order (several of its attempts paid at the
  sandbox, each notification delivered several times at once): latency, answers, and the books
  once quiet — the order paid once, every other capture refunded (invariant 1).

Ratios are to the uncontended apply-pay (new attempt, fresh order, one channel and client).
A Celery worker is not needed for apply-pay to answer; one, started as ``scripts/run`` starts it,
runs for the callbacks so the automatic refunds reach the gateway.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

from django.db import connection

from orders.models import Order
from payments.models import LIVE_STATUSES, GatewayEvent, PaymentAttempt
from refunds.models import Refund
from sandbox import alipay as sandbox_alipay
from sandbox import wechat as sandbox_wechat
from sandbox.app import Sandbox
from sandbox.config import load_config
from sandbox.state import Status, Trade
from shop.bench.callbacks import Notification
from shop.bench.core import Measure, Row, Write, table
from shop.bench.processes import (
    ROOT,
    celery_worker,
    free_port,
    gunicorn,
    stop,
    wait_until_answering,
)
from shop.models import Product

SKU = "HOT-ORDER"
PRICE = 2599  # fen
COMBOS = [(channel, client) for channel in ("alipay", "wechat") for client in ("pc", "wap", "app")]
# Answers the API contract gives an apply-pay; anything else (a 500, a dropped connection) is an
# error in the tables.
CLEAR_ANSWERS = {200, 201, 409, 503}
START_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Sizes:
    sequential: int  # apply-pays per floor row
    burst: int  # concurrent apply-pays on one order
    rounds: int  # bursts, each on a fresh order
    paid_attempts: int  # attempts of the callback order paid at the sandbox
    deliveries: int  # concurrent notifications in all


def _sizes(tiny: bool) -> Sizes:
    if tiny:
        return Sizes(sequential=4, burst=10, rounds=1, paid_attempts=2, deliveries=8)
    return Sizes(sequential=40, burst=50, rounds=3, paid_attempts=5, deliveries=50)


# --- processes ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _sandbox(log: IO[bytes]) -> Iterator[str]:
    """``manage.py run_sandbox`` on a free port; its URL once it answers."""
    port = free_port()
    env = {**os.environ, "SANDBOX_LOG_LEVEL": "WARNING", "SANDBOX_NOTIFY_SCHEDULE": "1,1,1"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_sandbox", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url + "/sandbox/faults", process)
        yield url
    finally:
        stop(process)


# --- HTTP ----------------------------------------------------------------------------------------


class Http:
    """One kept-alive connection per calling thread; JSON in and out."""

    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._local = threading.local()

    def connect(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.connect()
        self._local.conn = conn

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Status and body; status 0 when the connection failed twice."""
        if getattr(self._local, "conn", None) is None:
            self.connect()
        for retry in (False, True):
            conn: http.client.HTTPConnection = self._local.conn
            try:
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                conn.close()  # the server closed a kept-alive connection: reconnect once
                if retry:
                    return 0, b""
                self.connect()
        return 0, b""

    def json(
        self, method: str, path: str, payload: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        body = None if payload is None else json.dumps(payload).encode()
        status, raw = self.request(
            method, path, body, {"Content-Type": "application/json", **(headers or {})}
        )
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, None


@dataclass(frozen=True)
class ShopOrder:
    public_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def pk(self) -> int:
        return int(Order.objects.values_list("pk", flat=True).get(public_id=self.public_id))


class Shopper:
    """The JSON API as a shopper's client uses it (contract.md)."""

    def __init__(self, url: str) -> None:
        self.http = Http(url)
        self._count = 0
        self._lock = threading.Lock()

    def order(self) -> ShopOrder:
        with self._lock:
            self._count += 1
            n = self._count
        # A different e-mail each time: the same body from the same client within the dedupe
        # window would be answered with the first order.
        status, body = self.http.json(
            "POST",
            "/api/v1/orders/",
            {"items": [{"sku": SKU, "quantity": 1}], "email": f"hot-{n}@example.com"},
        )
        if status != 201:
            raise RuntimeError(f"order create answered {status}: {body}")
        return ShopOrder(body["id"], body["access_token"])

    def pay(self, order: ShopOrder, channel: str, client: str) -> tuple[int, Any]:
        return self.http.json(
            "POST",
            f"/api/v1/orders/{order.public_id}/pay",
            {"channel": channel, "client": client},
            order.auth,
        )


class SandboxControl:
    def __init__(self, url: str) -> None:
        self.http = Http(url)

    def faults(self, **faults: float) -> None:
        status, body = self.http.json("POST", "/sandbox/faults", faults)
        if status != 200:
            raise RuntimeError(f"sandbox faults answered {status}: {body}")

    def pay(self, channel: str, out_trade_no: str) -> int:
        status, _ = self.http.json(
            "POST", "/sandbox/pay", {"channel": channel, "out_trade_no": out_trade_no}
        )
        return status

    def trades(self, out_trade_nos: set[str]) -> list[dict[str, Any]]:
        status, body = self.http.json("GET", "/sandbox/ledger")
        if status != 200:
            raise RuntimeError(f"sandbox ledger answered {status}")
        return [t for t in body["trades"] if t["out_trade_no"] in out_trade_nos]

    def open(self, action: dict[str, Any], alipay_gateway: str) -> None:
        """What the shopper's browser or app does with an Alipay wap/app action: the trade exists
        at the gateway from then on (WeChat trades exist from the prepay)."""
        if action.get("type") == "redirect" and str(action.get("url", "")).startswith(
            alipay_gateway
        ):
            self.http.request(
                "GET", urlsplit(action["url"])._replace(scheme="", netloc="").geturl()
            )
        elif action.get("type") == "app" and "order_string" in action.get("params", {}):
            self.http.request("GET", f"/gateway.do?{action['params']['order_string']}")


# --- measuring -----------------------------------------------------------------------------------


def _burst(
    count: int, step: Callable[[int], int], *, connect: Callable[[], None]
) -> tuple[Measure, list[int]]:
    """``count`` callers, each connected first, released together by a barrier; one request
    each. Latency runs from the release. Errors: answers outside CLEAR_ANSWERS."""
    barrier = threading.Barrier(count + 1)
    latencies = [0.0] * count
    statuses = [0] * count

    def caller(i: int) -> None:
        connect()
        barrier.wait()
        t0 = time.perf_counter()
        statuses[i] = step(i)
        latencies[i] = time.perf_counter() - t0

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    errors = sum(status not in CLEAR_ANSWERS for status in statuses)
    return Measure(count, seconds, latencies, errors=errors), statuses


def _sequential(count: int, step: Callable[[int], int], *, ok: set[int]) -> Measure:
    latencies = []
    errors = 0
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        status = step(i)
        latencies.append(time.perf_counter() - t0)
        errors += status not in ok
    return Measure(count, time.perf_counter() - started, latencies, errors=errors)


def _spread_ms(measure: Measure) -> str:
    return f"{(max(measure.latencies) - min(measure.latencies)) * 1000:.0f} ms"


def _statuses(statuses: list[int]) -> str:
    return ", ".join(f"{status or 'failed'}×{n}" for status, n in sorted(Counter(statuses).items()))


# --- the floor -----------------------------------------------------------------------------------


def _floor(shopper: Shopper, sizes: Sizes) -> list[Row]:
    n = sizes.sequential

    def fresh_orders() -> list[ShopOrder]:
        return [shopper.order() for _ in range(n)]

    orders = fresh_orders()
    same = _sequential(n, lambda i: shopper.pay(orders[i], "alipay", "pc")[0], ok={201})
    orders = fresh_orders()
    alternating = _sequential(
        n, lambda i: shopper.pay(orders[i], *COMBOS[i % len(COMBOS)])[0], ok={201}
    )
    one = shopper.order()
    shopper.pay(one, "alipay", "pc")
    # Every call a switch: the live attempt is closed at its gateway, a new trade opened.
    switches = _sequential(
        n, lambda i: shopper.pay(one, *COMBOS[(i + 1) % len(COMBOS)])[0], ok={201}
    )
    reuse = _sequential(n, lambda i: shopper.pay(one, *COMBOS[n % len(COMBOS)])[0], ok={200})
    return [
        Row("new attempt, fresh order, alipay/pc", same, same),
        Row("new attempt, fresh order, alternating", alternating, same,
            "alternating alipay/wechat × pc/wap/app"),
        Row("switch on one order (close, then open)", switches, same,
            "each a switch to another channel/client: a close and a prepay at the gateway"),
        Row("reuse on one order (same channel/client)", reuse, same,
            "the live attempt returned as it is (200), no gateway call"),
    ]  # fmt: skip


# --- concurrent apply-pays on one order ----------------------------------------------------------


@dataclass(frozen=True)
class Books:
    attempts: int
    prepays: int
    closes: int
    gateway_trades: int
    live_local: int
    live_at_gateway: int

    def line(self) -> str:
        return (
            f"attempts opened {self.attempts} (prepays {self.prepays}, closes {self.closes});"
            f" trades at the sandbox {self.gateway_trades}; live at the end: {self.live_local}"
            f" here, {self.live_at_gateway} at the sandbox"
        )


def _books(order_pk: int, control: SandboxControl, *, since_attempt: int = 0) -> Books:
    attempts = PaymentAttempt.objects.filter(order_id=order_pk, pk__gt=since_attempt)
    out_trade_nos = set(
        PaymentAttempt.objects.filter(order_id=order_pk).values_list("out_trade_no", flat=True)
    )
    events = GatewayEvent.objects.filter(attempt__order_id=order_pk, attempt__pk__gt=since_attempt)
    closes = GatewayEvent.objects.filter(attempt__order_id=order_pk, kind=GatewayEvent.Kind.CLOSE)
    trades = control.trades(out_trade_nos)
    opened = set(attempts.values_list("out_trade_no", flat=True))
    return Books(
        attempts=len(opened),
        prepays=events.filter(kind=GatewayEvent.Kind.PREPAY).count(),
        closes=closes.count(),
        gateway_trades=sum(t["out_trade_no"] in opened for t in trades),
        live_local=PaymentAttempt.objects.filter(order_id=order_pk, status__in=LIVE_STATUSES)
        .count(),
        live_at_gateway=sum(
            t["status"] == Status.NOTPAY and not t["expired"] and not t["close_ignored"]
            for t in trades
        ),
    )  # fmt: skip


def _apply_pay_bursts(
    shopper: Shopper, control: SandboxControl, sizes: Sizes, floor: Measure
) -> tuple[list[Row], list[str]]:
    rows, problems = [], []
    rng = random.Random(7)
    for round_ in range(sizes.rounds):
        picks = [rng.choice(COMBOS) for _ in range(sizes.burst)]
        row, books = _apply_pay_burst(shopper, control, picks, floor, name=f"burst {round_ + 1}")
        rows.append(row)
        if books.live_local > 1 or books.live_at_gateway > 1:
            problems.append(f"{row.name}: more than one live attempt: {books.line()}")
    return rows, problems


def _apply_pay_burst(
    shopper: Shopper,
    control: SandboxControl,
    picks: list[tuple[str, str]],
    floor: Measure,
    *,
    name: str,
) -> tuple[Row, Books]:
    """On a fresh order with a live attempt (alipay/pc), ``picks`` apply-pays at once."""
    order = shopper.order()
    status, first = shopper.pay(order, "alipay", "pc")
    if status != 201:
        raise RuntimeError(f"the burst's first apply-pay answered {status}: {first}")
    pk = order.pk()
    since = (
        PaymentAttempt.objects.filter(order_id=pk).order_by("-pk").values_list("pk", flat=True)[0]
    )
    codes: Counter[str] = Counter()

    def click(i: int) -> int:
        status, body = shopper.pay(order, *picks[i])
        code = (
            "attempt" if status in (200, 201) else str(isinstance(body, dict) and body.get("code"))
        )
        codes[code] += 1
        return status

    measure, statuses = _burst(len(picks), click, connect=shopper.http.connect)
    books = _books(pk, control, since_attempt=since)
    answers = ", ".join(f"{code} {n}" for code, n in sorted(codes.items()))
    note = (
        f"answers {_statuses(statuses)} ({answers}); spread {_spread_ms(measure)}; {books.line()}"
    )
    return Row(f"{len(picks)} concurrent apply-pays, {name}", measure, floor, note), books


# --- concurrent callbacks on one order -----------------------------------------------------------


def _parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _success_notifications(signer: Sandbox, trade: dict[str, Any]) -> Callable[[], Notification]:
    """Renders the success notification for a trade the sandbox captured, signed (and for WeChat
    Pay encrypted) by the sandbox's own code, as the sandbox itself would have sent it; each call
    is a re-delivery of the same event (fresh timestamp, nonce and signature)."""
    created = _parse_time(trade["created_at"])
    assert created is not None
    captured = Trade(
        channel=trade["channel"],
        out_trade_no=trade["out_trade_no"],
        trade_no=trade["trade_no"],
        kind=trade["kind"],
        amount=trade["amount"],
        currency=trade["currency"],
        subject="Oncepay hot order",
        notify_url=trade["notify_url"],
        created_at=created,
        expires_at=_parse_time(trade["expires_at"]),
        fingerprint=(),
        buyer_id="bench-buyer",
        status=Status.PAID,
        paid_at=_parse_time(trade["paid_at"]),
    )
    gateway = sandbox_wechat if trade["channel"] == "wechat" else sandbox_alipay
    delivery = gateway.paid_delivery(signer, captured)

    def render() -> Notification:
        rendered = delivery.render()
        return Notification(
            trade["channel"], trade["out_trade_no"], rendered.body, dict(rendered.headers)
        )

    return render


def _acknowledged(channel: str, status: int, body: bytes) -> bool:
    if channel == "wechat":
        return status in (200, 204)
    return status == 200 and body == b"success"


def _callbacks(
    shopper: Shopper,
    control: SandboxControl,
    sizes: Sizes,
    floor: Measure,
    *,
    alipay_gateway: str,
    worker_env: dict[str, str],
    log: IO[bytes],
    tiny: bool,
) -> tuple[list[Row], list[str]]:
    problems: list[str] = []
    # Alipay refunds answer at once, WeChat Pay's after a query a few seconds later: the tiny run
    # keeps to Alipay.
    combos = [("alipay", "pc"), ("wechat", "pc"), ("alipay", "wap"), ("wechat", "wap"),
              ("wechat", "app"), ("alipay", "app")]  # fmt: skip
    if tiny:
        combos = [("alipay", "pc"), ("alipay", "wap")]
    combos = combos[: sizes.paid_attempts]
    order = shopper.order()
    # The gateway lets closed trades be paid and sends nothing itself: several captures for one
    # order, their notifications delivered by us, all at once.
    control.faults(ignore_close=1, notify_drop=1)
    try:
        opened = []
        for channel, client in combos:  # each a switch: the last one closed (the close ignored)
            status, attempt = shopper.pay(order, channel, client)
            if status != 201:
                raise RuntimeError(f"apply-pay {channel}/{client} answered {status}: {attempt}")
            control.open(attempt["action"], alipay_gateway)
            opened.append(attempt)
        for attempt in opened:  # paid before any notification arrives: old QR codes paid too
            if control.pay(attempt["channel"], attempt["out_trade_no"]) != 200:
                raise RuntimeError(f"the sandbox would not take payment for {attempt}")
    finally:
        control.faults(ignore_close=0, notify_drop=0)
    pk = order.pk()
    out_trade_nos = set(
        PaymentAttempt.objects.filter(order_id=pk).values_list("out_trade_no", flat=True)
    )
    trades = control.trades(out_trade_nos)
    signer = Sandbox(load_config("http://127.0.0.1:9"))
    renders = [_success_notifications(signer, trade) for trade in trades]
    notes = [renders[i % len(renders)]() for i in range(sizes.deliveries)]
    random.Random(11).shuffle(notes)
    acked = [False] * len(notes)

    def deliver(i: int) -> int:
        note = notes[i]
        status, body = shopper.http.request("POST", note.path, note.body, note.headers)
        acked[i] = _acknowledged(note.channel, status, body)
        return status

    # The automatic refunds go through the worker. Follow-ups queued by the apply-pays before
    # (first polls of attempts nobody pays) are dropped: they would only add load here.
    from shop.celery import app

    app.control.purge()
    with celery_worker(env=worker_env, log=log):
        measure, statuses = _burst(len(notes), deliver, connect=shopper.http.connect)
        # A gateway re-sends what was not acknowledged: that, not the status, is the error here.
        measure.errors = acked.count(False)
        settled, books = _wait_quiet(pk, control, out_trade_nos, timeout=30 if tiny else 90)
    if not settled:
        problems.append(f"callbacks: not quiet in time: {books}")
    row = Row(
        f"{len(notes)} concurrent callbacks, {len(trades)} captures",
        measure,
        floor,
        f"answers {_statuses(statuses)}, {acked.count(True)} acknowledged;"
        f" spread {_spread_ms(measure)}; {books}",
    )
    return [row], problems


def _wait_quiet(
    order_pk: int, control: SandboxControl, out_trade_nos: set[str], *, timeout: float
) -> tuple[bool, str]:
    """Until the order is paid by one attempt and every other capture's refund succeeded at the
    gateway: captured minus refunded equals the total (invariant 1)."""
    deadline = time.monotonic() + timeout
    while True:
        order = Order.objects.get(pk=order_pk)
        trades = control.trades(out_trade_nos)
        captured = sum(t["amount"] for t in trades if t["status"] == Status.PAID)
        refunded = sum(t["refunded"] for t in trades)
        refunds = Refund.objects.filter(order_id=order_pk)
        duplicates = refunds.filter(reason="duplicate_payment").count()
        done = refunds.filter(status="succeeded").count()
        paid_by = order.paid_attempt_id
        net = captured - refunded
        books = (
            f"order {order.status} (by 1 attempt: {paid_by is not None}), captured"
            f" {captured / 100:.2f}, refunded {refunded / 100:.2f}, net {net / 100:.2f}"
            f" of {order.total_amount / 100:.2f}; {duplicates} duplicate refunds, {done} succeeded"
        )
        captures = sum(t["status"] == Status.PAID for t in trades)
        if (
            order.status == "paid"
            and paid_by is not None
            and net == order.total_amount
            and duplicates == captures - 1
            and done == duplicates
        ):
            return True, books
        if time.monotonic() > deadline:
            return False, books
        time.sleep(0.25)


# --- the scenario --------------------------------------------------------------------------------


def run(*, tiny: bool, write: Write) -> None:
    sizes = _sizes(tiny)
    Product.objects.update_or_create(
        sku=SKU,
        defaults={"name": "Hot order tea", "price_amount": PRICE, "currency": "CNY",
                  "stock": 1_000_000},
    )  # fmt: skip
    connection.close()  # the bench's own connection is not held open through the run
    port = free_port()
    with tempfile.TemporaryFile() as log, _sandbox(log) as sandbox_url:
        env = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
        env.update(
            SHOP_PORT=str(port),
            SHOP_BASE_URL=f"http://127.0.0.1:{port}",
            SANDBOX_BASE_URL=sandbox_url,
            # Measure the shop, not its throttle (all requests come from one address here).
            RATE_LIMIT_ORDER_CREATE="1000000/min",
            RATE_LIMIT_APPLY_PAY="1000000/min",
            RATE_LIMIT_STATUS="1000000/min",
        )
        with gunicorn("shop.wsgi:application", env=env, log=log, port=port) as shop:
            shopper = Shopper(shop.url)
            control = SandboxControl(sandbox_url)
            _warm_up(shopper)
            floor_rows = _floor(shopper, sizes)
            floor = floor_rows[0].ours
            burst_rows, problems = _apply_pay_bursts(shopper, control, sizes, floor)
            for row in (*floor_rows, *burst_rows):
                row.ours.peak_rss_mb = shop.peak_rss_mb()
            callback_rows, more = _callbacks(
                shopper, control, sizes, floor, alipay_gateway=f"{sandbox_url}/gateway.do",
                worker_env=env, log=log, tiny=tiny,
            )  # fmt: skip
            callback_rows[0].ours.peak_rss_mb = shop.peak_rss_mb()
            problems += more
        table("hot order: uncontended apply-pay, one after another (the floor)", floor_rows, write)
        table(f"hot order: {sizes.burst} concurrent apply-pays on one order, mixed channels"
              " and clients", burst_rows, write)  # fmt: skip
        table(f"hot order: {sizes.deliveries} concurrent success notifications for one order",
              callback_rows, write)  # fmt: skip
        write("-- ratio: throughput over the floor's first row; RSS: peak of a web worker")
        for problem in problems:
            write(f"!! {problem}")
        if problems or any(row.ours.errors for row in (*floor_rows, *burst_rows, *callback_rows)):
            log.seek(0)
            write("the servers' last log lines:")
            write(log.read().decode(errors="replace")[-3000:])


def _warm_up(shopper: Shopper) -> None:
    """Both web workers past their first requests (imports, connections, the gateways' keys)."""
    orders = [shopper.order() for _ in range(8)]

    def warm(i: int) -> int:
        return shopper.pay(orders[i], *COMBOS[i % len(COMBOS)])[0]

    _burst(len(orders), warm, connect=shopper.http.connect)
