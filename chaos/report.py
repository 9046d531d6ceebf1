"""The run's report: what was done, what was injected, what the invariants say."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from chaos.faults import FaultRecord
from chaos.invariants import Heal, Violation, percentile


@dataclass
class Quiescence:
    reached: bool
    seconds: float
    faults_on: bool  # True: quiet was reached with the sandbox faults still on
    unsettled: list[str] = field(default_factory=list)  # what still moved when time ran out


@dataclass
class RunReport:
    seed: int
    shoppers: int
    duration: float
    reproduce: str
    stack: dict[str, Any]
    sandbox_faults: dict[str, float]
    process_faults: list[FaultRecord]
    notification_faults: dict[str, int]
    figures: dict[str, int]
    actions: dict[str, int]
    calls: dict[str, dict[str, int]]
    violations: list[Violation]
    heals: list[Heal]
    slow_heals: list[Heal]
    refund_lags: list[float]
    heal_bound_seconds: float
    quiescence: Quiescence
    log_dir: str = ""
    gateway_trouble: dict[str, int] = field(default_factory=dict)
    shop_figures: dict[str, Any] = field(default_factory=dict)  # from /metrics

    @property
    def exit_code(self) -> int:
        return 1 if self.violations else 0

    def heal_summary(self) -> dict[str, Any]:
        seconds = [h.seconds for h in self.heals]
        return {
            "count": len(seconds),
            "p50": _round(percentile(seconds, 50)),
            "p99": _round(percentile(seconds, 99)),
            "max": _round(max(seconds, default=None)),
            "bound": self.heal_bound_seconds,
            "slow": len(self.slow_heals),
        }

    def refund_lag_summary(self) -> dict[str, Any]:
        return {
            "count": len(self.refund_lags),
            "p50": _round(percentile(self.refund_lags, 50)),
            "p99": _round(percentile(self.refund_lags, 99)),
            "max": _round(max(self.refund_lags, default=None)),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "shoppers": self.shoppers,
            "duration": self.duration,
            "reproduce": self.reproduce,
            "stack": self.stack,
            "sandbox_faults": self.sandbox_faults,
            "process_faults": [asdict(r) for r in self.process_faults],
            "notification_faults": self.notification_faults,
            "figures": self.figures,
            "actions": self.actions,
            "calls": self.calls,
            "violations": [v.as_dict() for v in self.violations],
            "heal": self.heal_summary(),
            "slow_heals": [asdict(h) for h in self.slow_heals],
            "refund_lag": self.refund_lag_summary(),
            "quiescence": asdict(self.quiescence),
            "log_dir": self.log_dir,
            "gateway_trouble": self.gateway_trouble,
            "shop_figures": self.shop_figures,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True)

    def render(self) -> str:
        f = self.figures
        heal = self.heal_summary()
        lag = self.refund_lag_summary()
        q = self.quiescence
        statuses = ", ".join(
            f"{k.removeprefix('orders_')} {v}"
            for k, v in sorted(f.items())
            if k.startswith("orders_") and k != "orders_paid_after_expiry"
        )
        lines = [
            f"Oncepay chaos run, seed {self.seed}",
            f"  reproduce: {self.reproduce}",
            "  stack: " + ", ".join(f"{k}={v}" for k, v in self.stack.items()),
            f"  quiescence: {'reached' if q.reached else 'NOT reached'} "
            f"{q.seconds:.1f}s after the load"
            + (
                " (faults off)"
                if not q.faults_on
                else " (faults still on)"
                if self.sandbox_faults
                else ""
            ),
        ]
        lines += [f"    still moving: {item}" for item in q.unsettled[:20]]
        lines += [
            f"shoppers: {self.shoppers} for {self.duration:.0f}s",
            f"orders: {f.get('orders', 0)} ({statuses})",
            f"attempts: {f.get('attempts', 0)} "
            f"(trades at the gateway: {f.get('trades_at_gateway', 0)})",
            f"captures: {f.get('captures', 0)} (amount {f.get('captured_amount', 0)}, "
            f"refunded {f.get('refunded_amount', 0)})",
            f"duplicates caught: {f.get('duplicates_refunded', 0)} refunded as duplicate_payment; "
            f"late captures refunded: {f.get('late_captures_refunded', 0)}; "
            "orders paid after their deadline (grace/revival): "
            f"{f.get('orders_paid_after_expiry', 0)}",
            f"refunds: {f.get('refunds', 0)}",
            f"idempotent replays: {self.actions.get('idempotent_replays', 0)}, "
            f"keyless double-submits deduplicated: {self.actions.get('dedupe_hits', 0)} "
            f"(missed: {self.actions.get('dedupe_misses', 0)})",
            "faults injected:",
            "  sandbox rates: "
            + (", ".join(f"{k}={v:g}" for k, v in sorted(self.sandbox_faults.items())) or "none"),
            "  seen in the sandbox's notification log: "
            + ", ".join(f"{k} {v}" for k, v in self.notification_faults.items()),
            "  gateway calls without a usable answer, as the shop recorded them: "
            + (", ".join(f"{k} {v}" for k, v in self.gateway_trouble.items()) or "n/a"),
            "  process faults: "
            + (str(len(self.process_faults)) if self.process_faults else "none"),
        ]
        lines += [f"    +{r.at:6.1f}s {r.kind}: {r.detail}" for r in self.process_faults]
        lines += [
            "shopper actions: "
            + ", ".join(
                f"{k} {v}" for k, v in sorted(self.actions.items()) if not k.startswith("plan_")
            ),
            "plans: "
            + ", ".join(
                f"{k[5:]} {v}" for k, v in sorted(self.actions.items()) if k.startswith("plan_")
            ),
            "server errors (5xx other than 503): " + _server_errors(self.calls),
            f"time to heal (gateway paid_at -> shop shows the capture): p50 {_s(heal['p50'])}, "
            f"p99 {_s(heal['p99'])}, max {_s(heal['max'])} over {heal['count']} captures; "
            f"over {self.heal_bound_seconds:g}s "
            "(last poll step + sweep + read timeout + sampling): "
            f"{heal['slow']}",
        ]
        lines += [
            f"    slow: order {h.order_id} {h.out_trade_no} {h.seconds:.1f}s"
            + (" (first seen at the final check)" if h.seen_at_check else "")
            for h in self.slow_heals[:20]
        ]
        lines += _shop_figures(self.shop_figures)
        lines += [
            f"refund lag (paid_at -> refund at the gateway): p50 {_s(lag['p50'])}, "
            f"p99 {_s(lag['p99'])}, max {_s(lag['max'])} over {lag['count']} refunded trades",
            f"violations: {len(self.violations)}",
        ]
        lines += [
            f"  - [{v.invariant}] order {v.order_id}"
            + (f" trade {v.out_trade_no}" if v.out_trade_no else "")
            + f": {v.detail}"
            for v in self.violations
        ]
        if self.log_dir:
            lines.append(f"logs: {self.log_dir}")
        lines.append(f"seed: {self.seed}")
        return "\n".join(lines)


def _shop_figures(figures: dict[str, Any]) -> list[str]:
    """The shop's own figures (``shop.metrics.figures`` over its /metrics): the definitions a
    dashboard uses, beside the shopper-side figures above (what the run saw from outside)."""
    if not figures:
        return ["shop's own figures: /metrics did not answer"]
    known, healed = figures["known"], figures["healed"]
    callbacks = ", ".join(f"{k} {v}" for k, v in figures["callbacks"].items()) or "none"
    return [
        "shop's own figures (/metrics): time to know a payment (paid_at -> recorded) "
        f"p50 {_s(known['p50'])}, p99 {_s(known['p99'])} over {known['count']} captures; "
        f"healed without a callback: p50 {_s(healed['p50'])}, p99 {_s(healed['p99'])} over "
        f"{healed['count']}",
        f"  callbacks: {callbacks}",
    ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}s"


def _server_errors(calls: dict[str, dict[str, int]]) -> str:
    found = [
        f"{name} {status}x{count}"
        for name, statuses in sorted(calls.items())
        for status, count in sorted(statuses.items())
        if status.startswith("5") and status != "503"
    ]
    return ", ".join(found) or "none"
