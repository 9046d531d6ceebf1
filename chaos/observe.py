"""What the run saw while it ran: orders, attempts, captures, and snapshots of order views.

Every order view any thread fetches goes through ``Tracker.observe``, so invariant 4 is
checked on every snapshot taken, and the first moment the shop showed a capture as known is
recorded for the healing times of invariant 3.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from chaos.clients import CallStats, ShopApi
from chaos.invariants import IDEMPOTENCY, Violation, check_live_attempts
from shop import metrics


@dataclass
class KnownOrder:
    id: str
    token: str
    shopper: int
    touched: float  # time.monotonic() of the last shopper action on it


@dataclass(frozen=True)
class Capture:
    order_id: str
    channel: str
    out_trade_no: str


class Tracker:
    """Thread-safe record of the run. Holds no HTTP clients; callers fetch and report here."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.orders: dict[str, KnownOrder] = {}
        self.otn_order: dict[str, str] = {}
        self.first_known: dict[str, float] = {}  # out_trade_no -> epoch seconds
        self.captures: dict[str, Capture] = {}  # paid by a shopper at the sandbox
        self.violations: list[Violation] = []
        self._violated_live: set[str] = set()
        self.counters: Counter[str] = Counter()
        self.calls = CallStats()  # every HTTP call's status, shared by all shoppers

    # --- recording -----------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def add_order(self, order_id: str, token: str, shopper: int) -> None:
        with self._lock:
            if order_id not in self.orders:
                self.orders[order_id] = KnownOrder(order_id, token, shopper, time.monotonic())
                self.counters["orders_created"] += 1

    def touch(self, order_id: str) -> None:
        with self._lock:
            if order_id in self.orders:
                self.orders[order_id].touched = time.monotonic()

    def note_attempt(self, order_id: str, attempt: dict[str, Any]) -> None:
        otn = attempt.get("out_trade_no")
        if isinstance(otn, str):
            with self._lock:
                self.otn_order[otn] = order_id

    def note_capture(self, order_id: str, channel: str, out_trade_no: str) -> None:
        with self._lock:
            self.captures[out_trade_no] = Capture(order_id, channel, out_trade_no)
            self.counters["sandbox_captures"] += 1

    def note_same_key(self, key: str, order_ids: list[str]) -> None:
        """Every answer to one Idempotency-Key must name the same order."""
        distinct = sorted(set(order_ids))
        if len(distinct) > 1:
            with self._lock:
                self.violations.append(
                    Violation(
                        IDEMPOTENCY,
                        distinct[0],
                        f"Idempotency-Key {key} answered with {len(distinct)} orders: "
                        + ", ".join(distinct),
                    )
                )

    def observe(self, view: Any) -> None:
        """Take in one order view (one database snapshot of the order)."""
        if not isinstance(view, dict) or "id" not in view:
            return
        now = time.time()
        order_id = str(view["id"])
        live_violation = check_live_attempts(view)
        with self._lock:
            self.counters["order_snapshots"] += 1
            for payment in view.get("payments", []):
                otn = str(payment.get("out_trade_no"))
                self.otn_order.setdefault(otn, order_id)
                if payment.get("status") == "succeeded":
                    self.first_known.setdefault(otn, now)
            if live_violation is not None:
                self.counters["snapshots_with_two_live_attempts"] += 1
                if order_id not in self._violated_live:  # one entry per order, counted above
                    self._violated_live.add(order_id)
                    self.violations.append(live_violation)

    # --- reading -------------------------------------------------------------------------

    def known_orders(self) -> list[KnownOrder]:
        with self._lock:
            return list(self.orders.values())

    def unhealed(self) -> list[KnownOrder]:
        """Orders with a capture the shop has not yet been seen to know."""
        with self._lock:
            ids = {c.order_id for otn, c in self.captures.items() if otn not in self.first_known}
            return [self.orders[i] for i in ids if i in self.orders]

    def recently_touched(self, seconds: float) -> list[KnownOrder]:
        cutoff = time.monotonic() - seconds
        with self._lock:
            return [o for o in self.orders.values() if o.touched >= cutoff]


class Monitor:
    """Samples order views while the run goes on: captures not yet known (healing times) and
    orders shoppers are busy with (invariant 4 under contention)."""

    def __init__(
        self, shop_url: str, tracker: Tracker, *, interval: float = 0.5, per_tick: int = 8
    ) -> None:
        self.shop = ShopApi(shop_url)
        self.tracker = tracker
        self.interval = interval
        self.per_tick = per_tick
        self.stop = threading.Event()
        self._rng = random.Random(0)  # which busy orders to sample; not part of the seed's story
        self._thread = threading.Thread(target=self._run, name="chaos-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        self._thread.join(timeout)
        self.shop.close()

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            # At random: captures the shop never learns of must not starve the others' samples.
            unhealed = self.tracker.unhealed()
            targets = self._rng.sample(unhealed, min(self.per_tick, len(unhealed)))
            busy = self.tracker.recently_touched(5.0)
            room = self.per_tick - len(targets)
            if room > 0 and busy:
                targets += self._rng.sample(busy, min(room, len(busy)))
            for order in targets:
                if self.stop.is_set():
                    return
                # No retries: a sample that fails is simply not taken.
                answer = self.shop.order(order.id, order.token, retry=False)
                if answer.status == 200:
                    self.tracker.observe(answer.body)


def shop_figures(shop_url: str) -> dict[str, Any]:
    """The shop's own figures, read from its ``/metrics`` (``shop.metrics.figures``: one
    definition of time to know, time to heal and callback outcomes, the dashboard's too).
    Empty if the shop does not answer (``METRICS_TOKEN`` in the environment is sent)."""
    import os

    import requests

    token = os.environ.get("METRICS_TOKEN", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.get(f"{shop_url}/metrics", headers=headers, timeout=10)
    except requests.RequestException:
        return {}
    return metrics.figures(response.text) if response.status_code == 200 else {}
