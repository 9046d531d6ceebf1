"""One chaos run from start to report: stack up, load with faults, quiescence, checks, stack down.

Every wait is bounded: the load by ``duration``, shoppers by a join deadline, quiescence by a
budget with the faults on and a second one with them off. A run that cannot settle says what is
still moving instead of hanging.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chaos.clients import SandboxApi, ShopApi, require_loopback
from chaos.faults import (
    Conductor,
    faults_off,
    notification_fault_counts,
    plan_process_faults,
    sandbox_settings,
)
from chaos.invariants import BOUNDED_HEALING, Violation, check, is_settled
from chaos.observe import Monitor, Tracker, shop_figures
from chaos.report import Quiescence, RunReport
from chaos.shoppers import Shopper
from chaos.stack import ChaosStack, StackSettings

logger = logging.getLogger(__name__)

SHOPPER_JOIN_SECONDS = 150.0  # after the load: the longest plan step plus a watch
QUIET_PASSES = 2  # consecutive quiet looks, one interval apart, before calling it quiet
# Faults off after the first budget ran out: what is left gets this long to settle.
FAULTS_OFF_BUDGET_SECONDS = 30.0
HEAL_SAMPLING_SLACK_SECONDS = 2.0


@dataclass(frozen=True)
class RunConfig:
    seed: int
    shoppers: int = 12
    duration: float = 120.0
    sandbox_faults: Mapping[str, float] = field(default_factory=dict)
    process_faults: tuple[str, ...] = ()
    lock_disabled: bool = False
    short_lock_ttl: bool = False
    order_ttl_seconds: int = 25
    quiesce_seconds: float = 0.0  # 0: the order TTL plus a margin
    use_running: str = ""  # shop URL of a stack someone else runs
    sandbox_url: str = ""
    keep_database: bool = False
    snapshot: bool = True
    redis_db: int = 14
    workers: int = 2
    worker_concurrency: int = 4
    database_url: str = ""  # where to create the run's database (its name is replaced)
    redis_url: str = ""
    reproduce: str = ""
    # For --use-running: the target's timing, to judge healing (default: this process's).
    poll_schedule: tuple[int, ...] = (1, 2, 3, 5, 8)
    sweep_interval_seconds: int = 1
    gateway_read_timeout: float = 2.0


def run(cfg: RunConfig, say: Callable[[str], None]) -> RunReport:
    stack: ChaosStack | None = None
    if cfg.use_running:
        shop_url, sandbox_url = require_loopback(cfg.use_running), require_loopback(cfg.sandbox_url)
    else:
        stack = ChaosStack(
            StackSettings(
                workers=cfg.workers,
                worker_concurrency=cfg.worker_concurrency,
                order_ttl_seconds=cfg.order_ttl_seconds,
                poll_schedule=",".join(map(str, cfg.poll_schedule)),
                sweep_interval_seconds=cfg.sweep_interval_seconds,
                gateway_read_timeout=cfg.gateway_read_timeout,
                lock_enabled=not cfg.lock_disabled,
                lock_ttl_seconds=0.5 if cfg.short_lock_ttl else 30.0,
                redis_db=cfg.redis_db,
                seed=cfg.seed,
            ),
            database_url=cfg.database_url,
            redis_url=cfg.redis_url,
            snapshot=cfg.snapshot,
        )
        shop_url, sandbox_url = stack.shop_url, stack.sandbox_url
    monitor: Monitor | None = None
    try:
        if stack is not None:
            began = time.monotonic()
            say(
                f"starting a private stack (database {stack.database.name}, redis db "
                f"{stack.redis.db} prefix {stack.redis.prefix}, logs in {stack.log_dir})"
            )
            stack.start()
            say(
                f"stack up in {time.monotonic() - began:.1f}s: "
                f"shop {shop_url}, sandbox {sandbox_url}"
            )
        tracker = Tracker()
        monitor = Monitor(shop_url, tracker)
        report = _run_load_and_check(cfg, stack, shop_url, sandbox_url, tracker, monitor, say)
        if stack is not None:
            report.log_dir = str(stack.log_dir)
            report.gateway_trouble = stack.database.gateway_trouble()
        report.shop_figures = shop_figures(shop_url)
        return report
    finally:
        if monitor is not None:
            monitor.close()
        if stack is not None:
            say("stopping the stack" + (" (keeping the database)" if cfg.keep_database else ""))
            stack.stop(keep_database=cfg.keep_database)


def _run_load_and_check(
    cfg: RunConfig,
    stack: ChaosStack | None,
    shop_url: str,
    sandbox_url: str,
    tracker: Tracker,
    monitor: Monitor,
    say: Callable[[str], None],
) -> RunReport:
    shop, sandbox = ShopApi(shop_url), SandboxApi(sandbox_url)
    applied = sandbox.set_faults(sandbox_settings(dict(cfg.sandbox_faults)))
    if applied.status != 200:
        raise RuntimeError(
            f"the sandbox refused the fault settings: {applied.status} {applied.body}"
        )
    products = shop.products()
    if products.status != 200 or not products.body:
        raise RuntimeError(f"no products to buy: {products.status}")
    skus = sorted(str(p["sku"]) for p in products.body if int(p.get("stock", 0)) > 100)
    if not skus:
        raise RuntimeError("no product with stock to spare")

    started_wall = time.time()
    started = time.monotonic()
    stop = threading.Event()
    monitor.start()
    conductor: Conductor | None = None
    if stack is not None and cfg.process_faults:
        plan = plan_process_faults(
            cfg.process_faults, cfg.duration, random.Random(cfg.seed ^ 0x5EED)
        )
        conductor = Conductor(plan, stack, started, stop)
        conductor.start()
    elif cfg.process_faults:
        say("process faults need the run's own stack; ignored with --use-running")
    run_id = uuid.uuid4().hex[:8]
    shoppers = [
        Shopper(
            i,
            seed=cfg.seed,
            run_id=run_id,
            shop_url=shop_url,
            sandbox_url=sandbox_url,
            skus=skus,
            tracker=tracker,
            stats=tracker.calls,
            stop=stop,
        )
        for i in range(cfg.shoppers)
    ]
    for shopper in shoppers:
        shopper.start()
        time.sleep(0.05)  # a ramp, not a thundering herd
    say(f"load: {cfg.shoppers} shoppers for {cfg.duration:.0f}s, seed {cfg.seed}")
    next_note = started + 15
    while time.monotonic() < started + cfg.duration:
        time.sleep(min(1.0, max(0.0, started + cfg.duration - time.monotonic())))
        if time.monotonic() >= next_note:
            next_note += 15
            c = tracker.counters
            say(
                f"  +{time.monotonic() - started:.0f}s orders {c['orders_created']}, "
                f"captures {c['sandbox_captures']}, process faults "
                f"{len(conductor.records) if conductor else 0}"
            )
    stop.set()
    join_deadline = time.monotonic() + SHOPPER_JOIN_SECONDS
    stuck = [s.index for s in shoppers if not s.join(max(0.1, join_deadline - time.monotonic()))]
    if stuck:
        say(f"shoppers still busy after the load: {stuck}")
    if conductor is not None:
        conductor.join(60)
        conductor.finish()
    load_end = time.monotonic()
    say(
        f"load over after {load_end - started:.0f}s: {tracker.counters['orders_created']} orders; "
        "waiting for quiescence"
    )

    if stack is None:
        _cancel_leftovers(shop, tracker)
    # Our own stack expires what shoppers left unpaid within the order TTL; on a running stack
    # the leftovers were cancelled above, so only polls and refunds remain.
    budget = cfg.quiesce_seconds or (60.0 if stack is None else cfg.order_ttl_seconds + 35.0)
    interval = max(1.0, 2.0 * cfg.sweep_interval_seconds)
    stall = max(20.0, 3.0 * cfg.poll_schedule[-1])
    reached, unsettled = wait_quiet(
        shop, sandbox, tracker, budget=budget, interval=interval, stall=stall
    )
    faults_on = reached
    if not reached:
        say(f"not quiet after {budget:.0f}s with faults on; turning faults off: {unsettled[:5]}")
    sandbox.set_faults(faults_off())
    if not reached:
        reached, unsettled = wait_quiet(
            shop, sandbox, tracker, budget=FAULTS_OFF_BUDGET_SECONDS, interval=interval, stall=stall
        )
    quiet_seconds = time.monotonic() - load_end
    say(
        f"quiescence {'reached' if reached else 'NOT reached'} after {quiet_seconds:.1f}s; checking"
    )
    monitor.stop.set()

    views = fetch_views(shop, tracker)
    ledger = sandbox.ledger()
    notifications = sandbox.notifications()
    if ledger.status != 200:
        raise RuntimeError(f"cannot read the sandbox ledger: {ledger.status}")
    heal_bound = (
        cfg.poll_schedule[-1]
        + cfg.sweep_interval_seconds
        + cfg.gateway_read_timeout
        + HEAL_SAMPLING_SLACK_SECONDS
    )
    result = check(
        trades=ledger.body["trades"],
        orders=list(views.values()),
        first_known=dict(tracker.first_known),
        heal_bound_seconds=heal_bound,
        check_time=time.time(),
        otn_hint=dict(tracker.otn_order),
        since=started_wall - 1 if stack is None else None,
    )
    violations = list(tracker.violations) + result.violations
    if not reached:
        violations += [
            Violation(BOUNDED_HEALING, order_id, f"still unsettled at the end: {_describe(view)}")
            for order_id, view in views.items()
            if not is_settled(view)
        ]
    missing = [o.id for o in tracker.known_orders() if o.id not in views]
    if missing:
        say(f"could not read {len(missing)} orders at the end: {missing[:5]}")
    return RunReport(
        seed=cfg.seed,
        shoppers=cfg.shoppers,
        duration=cfg.duration,
        reproduce=cfg.reproduce,
        stack=_stack_summary(cfg, stack),
        sandbox_faults=dict(cfg.sandbox_faults),
        process_faults=list(conductor.records) if conductor else [],
        notification_faults=notification_fault_counts(
            notifications.body.get("notifications", []) if notifications.status == 200 else []
        ),
        figures=result.figures,
        actions=dict(tracker.counters),
        calls=tracker.calls.snapshot(),
        violations=violations,
        heals=result.heals,
        slow_heals=result.slow_heals,
        refund_lags=result.refund_lags,
        heal_bound_seconds=heal_bound,
        quiescence=Quiescence(reached, round(quiet_seconds, 1), faults_on, unsettled),
    )


def _stack_summary(cfg: RunConfig, stack: ChaosStack | None) -> dict[str, Any]:
    if stack is None:
        return {"mode": "use-running", "shop": cfg.use_running, "sandbox": cfg.sandbox_url}
    s = stack.settings
    return {
        "mode": "own",
        "code": stack.source,
        "web_workers": s.workers,
        "worker_concurrency": s.worker_concurrency,
        "order_ttl": f"{s.order_ttl_seconds}s",
        "poll_schedule": s.poll_schedule,
        "sweep": f"{s.sweep_interval_seconds}s",
        "grace": f"{s.late_payment_grace_seconds}s",
        "notify_schedule": s.notify_schedule,
        "lock": "off" if not s.lock_enabled else f"ttl {s.lock_ttl_seconds:g}s",
    }


def _describe(view: Mapping[str, Any]) -> str:
    attempts = ", ".join(f"{p['out_trade_no']}={p['status']}" for p in view.get("payments", []))
    pending = sum(r.get("status") == "pending" for r in view.get("refunds", []))
    return f"order {view.get('status')}; attempts [{attempts}]; pending refunds {pending}"


def _fingerprint(
    view: Mapping[str, Any], trades: Mapping[str, Mapping[str, Any]]
) -> tuple[Any, ...]:
    """The gateway's state of an order's trades: when it moves, the order must be read again."""
    return tuple(
        sorted(
            (otn, t.get("status"), t.get("refunded"), len(t.get("refunds", [])))
            for otn in (str(p["out_trade_no"]) for p in view.get("payments", []))
            if (t := trades.get(otn)) is not None
        )
    )


def _behind_the_gateway(
    view: Mapping[str, Any], trades: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Trades of an order the gateway has captured while the shop's attempt is not succeeded:
    the shop has yet to find out (a lost callback on a closed trade is found by its watch)."""
    return [
        str(p["out_trade_no"])
        for p in view.get("payments", [])
        if p.get("status") != "succeeded"
        and (trades.get(str(p["out_trade_no"])) or {}).get("status") == "PAID"
    ]


def wait_quiet(
    shop: ShopApi,
    sandbox: SandboxApi,
    tracker: Tracker,
    *,
    budget: float,
    interval: float,
    stall: float,
) -> tuple[bool, list[str]]:
    """Wait until no order is unpaid, no attempt is open, no refund is pending, the shop knows
    every capture the gateway made and the sandbox has no notification left to deliver — twice
    in a row. Returns (quiet, what still moves).

    Gives up early when the same things stay unsettled for ``stall`` seconds: an attempt the
    shop polls forever will not settle by waiting longer."""
    views: dict[str, dict[str, Any]] = {}
    seen: dict[str, tuple[Any, ...]] = {}
    calm = 0
    deadline = time.monotonic() + budget
    last_moving: list[str] = []
    unchanged_since = time.monotonic()
    while True:
        ledger, notes = sandbox.ledger(), sandbox.notifications()
        if ledger.status != 200 or notes.status != 200:
            moving = ["the sandbox does not answer"]
        else:
            trades = {str(t["out_trade_no"]): t for t in ledger.body["trades"]}
            for order in tracker.known_orders():
                view = views.get(order.id)
                if (
                    view is not None
                    and is_settled(view)
                    and not _behind_the_gateway(view, trades)
                    and seen.get(order.id) == _fingerprint(view, trades)
                ):
                    continue
                answer = shop.order(order.id, order.token)
                if answer.status == 200:
                    tracker.observe(answer.body)
                    views[order.id] = answer.body
                    seen[order.id] = _fingerprint(answer.body, trades)
            moving = [f"{oid}: {_describe(v)}" for oid, v in views.items() if not is_settled(v)]
            moving += [
                f"{oid}: {otn} captured at the gateway, not yet known here"
                for oid, v in views.items()
                for otn in _behind_the_gateway(v, trades)
            ]
            moving += [f"{o.id}: not readable" for o in tracker.known_orders() if o.id not in views]
            pending = [
                n for n in notes.body["notifications"]
                if not (n.get("acked") or n.get("gave_up") or n.get("dropped"))
            ]  # fmt: skip
            if pending:
                moving.append(f"{len(pending)} notifications not yet delivered")
        calm = calm + 1 if not moving else 0
        if calm >= QUIET_PASSES:
            return True, []
        # An unpaid order is waiting for its deadline, not stuck: expiry will move it.
        unpaid = any(v.get("status") == "unpaid" for v in views.values())
        if moving != last_moving or unpaid:
            last_moving, unchanged_since = moving, time.monotonic()
        stalled = time.monotonic() - unchanged_since >= stall
        if time.monotonic() >= deadline or stalled:
            return False, moving
        time.sleep(interval)


def fetch_views(shop: ShopApi, tracker: Tracker) -> dict[str, dict[str, Any]]:
    views: dict[str, dict[str, Any]] = {}
    for order in tracker.known_orders():
        answer = shop.order(order.id, order.token)
        if answer.status == 200:
            tracker.observe(answer.body)
            views[order.id] = answer.body
    return views


def _cancel_leftovers(shop: ShopApi, tracker: Tracker) -> None:
    """On someone else's stack the order TTL may be long: close what the run left unpaid."""
    for order in tracker.known_orders():
        for _ in range(5):
            view = shop.order(order.id, order.token)
            if view.status != 200 or view.body.get("status") != "unpaid":
                break
            if shop.cancel(order.id, order.token).status != 503:
                break
            time.sleep(1.0)
