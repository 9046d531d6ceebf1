"""Asynchronous notifications: delivery, retries, and the notify faults.

One scheduler thread keeps a heap of due jobs and hands them to a small worker pool, so a slow
or hanging merchant endpoint (5 s timeout) never delays other deliveries, and request handling
never waits for any of it. The same heap runs other timed work (WeChat refunds completing).

A ``Delivery`` is one *logical* notification: every re-send carries the same notify_id / event
id, but ``render`` is called per attempt so signatures and timestamps are fresh each time.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from sandbox import timeutil
from sandbox.faults import Faults

logger = logging.getLogger(__name__)

DELIVERY_TIMEOUT_SECONDS = 5.0
# A notification held back by notify_reorder goes out after the next one; if no other
# notification comes along, it is released after this long so reorder never turns into drop.
REORDER_MAX_HOLD_SECONDS = 5.0


@dataclass(frozen=True)
class Rendered:
    body: bytes
    headers: dict[str, str]


@dataclass
class Attempt:
    at: dt.datetime
    number: int  # 1 for the first delivery, 2 for the first retry, ...
    duplicate: bool  # the extra copy sent by notify_duplicate
    status: int | None  # HTTP status, None when the request failed
    error: str
    acked: bool


@dataclass
class Delivery:
    notify_id: str
    channel: str
    kind: str  # "payment" | "refund"
    out_trade_no: str
    url: str
    render: Callable[[], Rendered]
    acknowledges: Callable[[int, bytes], bool]
    schedule: Sequence[float]  # seconds between attempts
    out_refund_no: str = ""
    created_at: dt.datetime = field(default_factory=timeutil.now)
    delay: float = 0.0
    dropped: bool = False
    held: bool = False
    was_reordered: bool = False
    acked: bool = False
    gave_up: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    first_sent: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "notify_id": self.notify_id,
            "channel": self.channel,
            "kind": self.kind,
            "out_trade_no": self.out_trade_no,
            "out_refund_no": self.out_refund_no,
            "url": self.url,
            "created_at": timeutil.iso_utc(self.created_at),
            "delay": self.delay,
            "dropped": self.dropped,
            "held": self.held,
            "reordered": self.was_reordered,
            "acked": self.acked,
            "gave_up": self.gave_up,
            "attempts": [
                {
                    "at": timeutil.iso_utc(a.at),
                    "number": a.number,
                    "duplicate": a.duplicate,
                    "status": a.status,
                    "error": a.error,
                    "acked": a.acked,
                }
                for a in self.attempts
            ],
        }


class Notifier:
    def __init__(self, faults: Faults, *, workers: int = 8) -> None:
        self._faults = faults
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._generation = 0  # bumped by reset(): stale jobs see a mismatch and do nothing
        self._deliveries: list[Delivery] = []
        self._held: list[Delivery] = []
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox-notify")
        self._thread = threading.Thread(target=self._run, name="sandbox-scheduler", daemon=True)
        self._stopping = False

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def reset(self) -> None:
        with self._cond:
            self._generation += 1
            self._heap.clear()
            self._deliveries.clear()
            self._held.clear()
            self._cond.notify_all()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._cond:
            return [d.as_dict() for d in self._deliveries]

    # --- timed jobs ----------------------------------------------------------------------------

    def call_later(self, delay: float, job: Callable[[], None]) -> None:
        """Run ``job`` on a worker after ``delay`` seconds, unless reset() happens first."""
        with self._cond:
            self._push(delay, self._generation, job)

    def _push(self, delay: float, generation: int, job: Callable[[], None]) -> None:
        # Caller holds self._cond.
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), generation, job))
        self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                _, _, generation, job = heapq.heappop(self._heap)
                if generation != self._generation:
                    continue
            try:
                self._pool.submit(self._guarded, job)
            except RuntimeError:  # pool shut down
                return

    @staticmethod
    def _guarded(job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:
            logger.exception("sandbox background job failed")

    # --- notifications -------------------------------------------------------------------------

    def submit(self, delivery: Delivery) -> None:
        """Queue a new logical notification, applying notify_drop and notify_delay_seconds."""
        delivery.dropped = self._faults.draw("notify_drop")
        delivery.delay = self._faults.uniform(self._faults.number("notify_delay_seconds"))
        with self._cond:
            self._deliveries.append(delivery)
            if delivery.dropped:
                logger.info("notify %s dropped (notify_drop)", delivery.notify_id)
                return
            generation = self._generation
            self._push(delivery.delay, generation, lambda: self._first(delivery, generation))

    def _first(self, delivery: Delivery, generation: int) -> None:
        if not delivery.was_reordered and self._faults.draw("notify_reorder"):
            with self._cond:
                if generation != self._generation:
                    return
                delivery.held = delivery.was_reordered = True
                self._held.append(delivery)
                self._push(
                    REORDER_MAX_HOLD_SECONDS,
                    generation,
                    lambda: self._release(delivery, generation),
                )
            return
        self._attempt(delivery, 1, generation)

    def _releaser(self, delivery: Delivery, generation: int) -> Callable[[], None]:
        return lambda: self._release(delivery, generation)

    def _release(self, delivery: Delivery, generation: int) -> None:
        with self._cond:
            if not delivery.held or generation != self._generation:
                return
            delivery.held = False
            self._held.remove(delivery)
        self._attempt(delivery, 1, generation)

    def _attempt(self, delivery: Delivery, number: int, generation: int) -> None:
        if delivery.acked or generation != self._generation:
            return
        if self._faults.draw("notify_duplicate"):

            def duplicate() -> None:
                self._post(delivery, number, True, generation)

            self._pool.submit(self._guarded, duplicate)
        acked = self._post(delivery, number, False, generation)
        with self._cond:
            if generation != self._generation:
                return
            release = []
            if not delivery.first_sent:
                delivery.first_sent = True
                # A held (reordered) notification goes out right after this one.
                release = [held for held in self._held if held is not delivery]
            for held in release:
                self._push(0.05, generation, self._releaser(held, generation))
            if acked or delivery.acked:
                return
            if number <= len(delivery.schedule):
                wait = float(delivery.schedule[number - 1])
                self._push(
                    wait, generation, lambda: self._attempt(delivery, number + 1, generation)
                )
            else:
                delivery.gave_up = True
                logger.info("notify %s: schedule exhausted, giving up", delivery.notify_id)

    def _post(self, delivery: Delivery, number: int, duplicate: bool, generation: int) -> bool:
        rendered = delivery.render()
        status: int | None = None
        error = ""
        body = b""
        session = requests.Session()
        session.trust_env = False  # never route a local merchant through an env proxy
        try:
            response = session.post(
                delivery.url,
                data=rendered.body,
                headers=rendered.headers,
                timeout=DELIVERY_TIMEOUT_SECONDS,
                allow_redirects=False,
            )
            status, body = response.status_code, response.content
        except requests.RequestException as exc:
            error = type(exc).__name__
        finally:
            session.close()
        acked = status is not None and delivery.acknowledges(status, body)
        with self._cond:
            if generation == self._generation:
                delivery.attempts.append(
                    Attempt(timeutil.now(), number, duplicate, status, error, acked)
                )
                if acked:
                    delivery.acked = True
        logger.info(
            "notify %s attempt %d%s -> %s",
            delivery.notify_id,
            number,
            " (duplicate)" if duplicate else "",
            status if status is not None else error,
        )
        return acked
