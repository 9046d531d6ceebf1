"""Simulated shoppers: threads that buy over the JSON API and pay at the sandbox's cashier.

Each shopper draws a whole ``Plan`` for an order from its own ``random.Random`` before acting,
so a seed fixes every choice (which channel, which attempt to pay, when to cancel) whatever the
answers and their timing turn out to be. What the shop answers decides only what is possible:
an attempt that was never created cannot be paid.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chaos.clients import Answer, CallStats, NotLoopback, SandboxApi, ShopApi
from chaos.observe import Tracker

logger = logging.getLogger(__name__)
T = TypeVar("T")

CHANNELS = ("alipay", "wechat")
CLIENTS = ("pc", "wap", "app")

# (choice, weight): how orders are placed and what becomes of them.
CREATE_MODES = (
    ("key", 55),
    ("key_retry", 15),  # the same request again with the same key, after the answer
    ("key_concurrent", 10),  # two or three copies at once (double click with a key)
    ("keyless", 12),
    ("keyless_double", 8),  # a double click without a key: the content dedupe's job
)
FATES = (
    ("pay", 42),  # apply-pay once or more, pay the last attempt
    ("pay_twice", 10),  # also pay an older attempt afterwards (old QR, second tab)
    ("pay_parallel", 6),  # pay two attempts at the same moment
    ("abandon", 6),  # order and leave: expiry closes it
    ("apply_abandon", 8),  # apply-pay, maybe open the cashier, never pay
    ("cancel", 9),  # apply-pay, cancel, maybe pay an old attempt after the cancel
    ("race_cancel", 8),  # pay and cancel at the same moment
    ("pay_after_expiry", 11),  # wait past the deadline, then pay (ignore_time_expire)
)
WATCH_SECONDS = 12.0  # how long a shopper watches the order page after acting


def weighted(rng: random.Random, choices: tuple[tuple[str, int], ...]) -> str:
    names = [name for name, _ in choices]
    return rng.choices(names, weights=[w for _, w in choices])[0]


@dataclass(frozen=True)
class Plan:
    items: list[dict[str, Any]]
    create: str
    fate: str
    applies: list[tuple[str, str]]  # (channel, client) in order
    parallel_apply: bool  # the first two apply-pays at the same moment (two tabs)
    open_before_pay: bool  # a pc shopper looks at the cashier page before paying
    back_button: bool  # apply-pay again after paying: must answer order_already_paid
    late_open: bool  # cancel: pay an old attempt after the order was cancelled
    expiry_overshoot: float  # pay_after_expiry: seconds past the deadline
    think: tuple[float, ...]  # pauses between steps, used in turn


def draw_plan(rng: random.Random, skus: list[str]) -> Plan:
    """Every choice for one order, drawn in a fixed order from ``rng``."""
    lines = rng.choice((1, 1, 1, 2))
    items = [
        {"sku": sku, "quantity": rng.randint(1, 2)}
        for sku in rng.sample(skus, min(lines, len(skus)))
    ]
    create = weighted(rng, CREATE_MODES)
    fate = weighted(rng, FATES)
    count = rng.choice((1, 1, 1, 2, 2, 3))
    if fate in ("pay_twice", "pay_parallel"):
        count = max(count, 2)
    applies: list[tuple[str, str]] = []
    for _ in range(count):
        if applies and rng.random() < 0.25:
            applies.append(applies[-1])  # the same channel and client again: the same QR
        else:
            applies.append((rng.choice(CHANNELS), rng.choice(CLIENTS)))
    return Plan(
        items=items,
        create=create,
        fate=fate,
        applies=applies,
        parallel_apply=count >= 2 and rng.random() < 0.2,
        open_before_pay=rng.random() < 0.5,
        back_button=rng.random() < 0.25,
        late_open=rng.random() < 0.6,
        expiry_overshoot=rng.uniform(0.2, 4.0),
        think=tuple(rng.uniform(0.05, 0.8) for _ in range(6)),
    )


def in_parallel(*calls: Callable[[], T]) -> list[T | None]:
    """Run the calls at the same moment; a call that raises gives None."""
    results: list[T | None] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int, call: Callable[[], T]) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=10)  # start together; if one never comes, go anyway
        try:
            results[index] = call()
        except Exception:
            logger.exception("parallel shopper action failed")

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


@dataclass
class OrderInHand:
    id: str
    token: str
    expires_at: float  # epoch seconds
    attempts: list[dict[str, Any]] = field(default_factory=list)  # apply-pay answers, in order
    paid: list[str] = field(default_factory=list)  # out_trade_nos this shopper paid


class Shopper:
    """One shopper: places orders one after another until the load ends."""

    def __init__(
        self,
        index: int,
        *,
        seed: int,
        run_id: str,
        shop_url: str,
        sandbox_url: str,
        skus: list[str],
        tracker: Tracker,
        stats: CallStats,
        stop: threading.Event,
    ) -> None:
        self.index = index
        self.rng = random.Random(seed * 1_000_003 + index)
        self.run_id = run_id
        self.shop_url = shop_url
        self.sandbox_url = sandbox_url
        self.skus = skus
        self.tracker = tracker
        self.stats = stats
        self.stop = stop
        self.shop = ShopApi(shop_url, stats)
        self.sandbox = SandboxApi(sandbox_url, stats)
        self._think: tuple[float, ...] = (0.2,)
        self._step = 0
        self._thread = threading.Thread(target=self._run, name=f"shopper-{index}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        number = 0
        try:
            while not self.stop.is_set():
                plan = draw_plan(self.rng, self.skus)
                self.tracker.count(f"plan_{plan.fate}")
                try:
                    self.shop_once(plan, number)
                except Exception:  # a shopper bug must not end the run silently
                    logger.exception("shopper %s failed on order %s", self.index, number)
                    self.tracker.count("shopper_errors")
                number += 1
        finally:
            self.shop.close()
            self.sandbox.close()

    # --- helpers -------------------------------------------------------------------------

    def pause(self) -> None:
        """Think time between steps; cut short when the load ends."""
        self.stop.wait(self._think[self._step % len(self._think)])
        self._step += 1

    def in_tab(self, action: Callable[[ShopApi], T]) -> T:
        """Run ``action`` on its own connection, as a second browser tab would."""
        with ShopApi(self.shop_url, self.stats) as shop:
            return action(shop)

    def view(self, order: OrderInHand, shop: ShopApi | None = None) -> dict[str, Any] | None:
        answer = (shop or self.shop).order(order.id, order.token)
        if answer.status != 200:
            return None
        self.tracker.observe(answer.body)
        body: dict[str, Any] = answer.body
        return body

    # --- one order -----------------------------------------------------------------------

    def shop_once(self, plan: Plan, number: int) -> None:
        self._think, self._step = plan.think, 0
        order = self.create(plan, number)
        if order is None:
            return
        self.pause()
        fate = plan.fate
        if fate == "abandon":
            return
        self.apply_all(order, plan)
        if fate == "apply_abandon":
            if order.attempts:
                self.open_action(order.attempts[-1])
            return
        if fate == "cancel":
            self.cancel(order)
            if plan.late_open and order.attempts:
                self.pause()
                self.pay_attempt(order, order.attempts[0])  # a second tab still shows it
        elif fate == "race_cancel":
            if order.attempts:
                self.open_action(order.attempts[-1])
                attempt = order.attempts[-1]
                in_parallel(
                    lambda: self.pay_attempt(order, attempt),
                    lambda: self.in_tab(lambda s: self.cancel(order, s)),
                )
            else:
                self.cancel(order)
        elif fate == "pay_after_expiry":
            wait = order.expires_at + plan.expiry_overshoot - time.time()
            if order.attempts and wait < 120 and not self.stop.wait(max(0.0, wait)):
                self.pay_attempt(order, order.attempts[-1])
                self.pause()
                self.apply(order, *plan.applies[-1])  # must say order_closed (or paid, if revived)
        elif order.attempts:
            self.pay_attempts(order, plan)
        self.watch(order)

    def create(self, plan: Plan, number: int) -> OrderInHand | None:
        body = {"items": plan.items, "email": f"s{self.index}.o{number}@chaos.example"}
        key = f"chaos-{self.run_id}-{self.index}-{number}"
        self.tracker.count(f"create_{plan.create}")
        if plan.create == "key":
            answers = [self.shop.create_order(body, key)]
        elif plan.create == "key_retry":
            answers = [self.shop.create_order(body, key)]
            self.pause()
            answers.append(self.shop.create_order(body, key))
        elif plan.create == "key_concurrent":
            copies = 2 + (number % 2)
            found = in_parallel(
                *[(lambda: self.in_tab(lambda s: s.create_order(body, key))) for _ in range(copies)]
            )
            answers = [a for a in found if a is not None]
        elif plan.create == "keyless":
            answers = [self.shop.create_order(body, None)]
        else:
            found = in_parallel(
                lambda: self.in_tab(lambda s: s.create_order(body, None)),
                lambda: self.in_tab(lambda s: s.create_order(body, None)),
            )
            answers = [a for a in found if a is not None]
        made = [a.body for a in answers if a.status in (200, 201) and isinstance(a.body, dict)]
        if not made:
            self.tracker.count("create_failed")
            return None
        for order_body in made:
            self.tracker.add_order(
                str(order_body["id"]), str(order_body["access_token"]), self.index
            )
        ids = [str(b["id"]) for b in made]
        if plan.create.startswith("key_"):
            self.tracker.note_same_key(key, ids)
            self.tracker.count("idempotent_replays", len(ids) - len(set(ids)))
        elif plan.create == "keyless_double":
            self.tracker.count(
                "dedupe_hits" if len(set(ids)) == 1 and len(ids) == 2 else "dedupe_misses"
            )
        first = made[0]
        expires = dt.datetime.fromisoformat(str(first["expires_at"])).timestamp()
        return OrderInHand(str(first["id"]), str(first["access_token"]), expires)

    def apply(
        self, order: OrderInHand, channel: str, client: str, shop: ShopApi | None = None
    ) -> Answer:
        answer = (shop or self.shop).pay(order.id, order.token, channel, client)
        self.tracker.touch(order.id)
        if answer.status in (200, 201) and isinstance(answer.body, dict):
            order.attempts.append(answer.body)
            self.tracker.note_attempt(order.id, answer.body)
            self.tracker.count("apply_pay_reused" if answer.status == 200 else "apply_pay_created")
        else:
            self.tracker.count(f"apply_pay_{answer.code or answer.status}")
        return answer

    def apply_all(self, order: OrderInHand, plan: Plan) -> None:
        applies = list(plan.applies)
        if plan.parallel_apply and len(applies) >= 2:
            (c1, k1), (c2, k2) = applies[0], applies[1]
            in_parallel(
                lambda: self.in_tab(lambda s: self.apply(order, c1, k1, s)),
                lambda: self.in_tab(lambda s: self.apply(order, c2, k2, s)),
            )
            applies = applies[2:]
            self.pause()
        for channel, client in applies:
            self.apply(order, channel, client)
            self.pause()

    def open_action(self, attempt: dict[str, Any]) -> None:
        """What the browser or app does with the action: this is when an Alipay wap or app
        trade comes to exist at the gateway."""
        action = attempt.get("action") or {}
        try:
            if action.get("type") == "redirect":
                self.sandbox.open_url(str(action["url"]))
            elif action.get("type") == "app" and "order_string" in (action.get("params") or {}):
                self.sandbox.open_alipay_app(str(action["params"]["order_string"]))
            elif action.get("type") == "qr" and action.get("code_url"):
                self.sandbox.open_url(str(action["code_url"]))
        except NotLoopback:
            self.tracker.count("action_not_loopback")

    def pay_attempt(self, order: OrderInHand, attempt: dict[str, Any]) -> Answer | None:
        if not attempt.get("out_trade_no"):
            return None
        if attempt.get("client") in ("wap", "app"):
            self.open_action(attempt)  # an Alipay wap/app trade exists only once opened
        channel, otn = str(attempt["channel"]), str(attempt["out_trade_no"])
        answer = self.sandbox.pay(channel, otn)
        self.tracker.touch(order.id)
        if answer.status == 200:
            order.paid.append(otn)
            self.tracker.note_capture(order.id, channel, otn)
        else:
            self.tracker.count(f"sandbox_pay_{answer.code or answer.status}")
        return answer

    def pay_attempts(self, order: OrderInHand, plan: Plan) -> None:
        last = order.attempts[-1]
        older = next(
            (a for a in order.attempts if a.get("out_trade_no") != last.get("out_trade_no")), None
        )
        if plan.open_before_pay:
            self.open_action(last)
        if plan.fate == "pay_parallel" and older is not None:
            in_parallel(
                lambda: self.pay_attempt(order, last), lambda: self.pay_attempt(order, older)
            )
        else:
            self.pay_attempt(order, last)
            if plan.fate == "pay_twice" and older is not None:
                self.pause()
                self.pay_attempt(order, older)
        if plan.back_button:
            self.pause()
            self.apply(order, *plan.applies[0])  # after paying: must answer order_already_paid

    def cancel(self, order: OrderInHand, shop: ShopApi | None = None) -> Answer:
        answer = (shop or self.shop).cancel(order.id, order.token)
        self.tracker.touch(order.id)
        self.tracker.count(f"cancel_{answer.code or answer.status}")
        return answer

    def watch(self, order: OrderInHand) -> None:
        """Keep the order page open for a while, as a shopper waiting for "paid" would."""
        deadline = time.monotonic() + WATCH_SECONDS
        while time.monotonic() < deadline:
            view = self.view(order)
            if view is not None and view.get("status") != "unpaid":
                known = {
                    p["out_trade_no"]
                    for p in view.get("payments", [])
                    if p.get("status") == "succeeded"
                }
                if set(order.paid) <= known:
                    return
            if self.stop.wait(1.0):
                return  # the load is over; the quiescence wait watches from here
