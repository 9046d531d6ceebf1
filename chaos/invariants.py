"""The invariants of product.md, checked against the sandbox ledger and the shop's API.

Pure functions over plain JSON (ledger entries from ``GET /sandbox/ledger``, order views from
``GET /api/v1/orders/{id}/``), so the checker can be fed synthetic data and shown to fail.
The ledger is the ground truth for money; the API is what the shop believes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

PAID_ORDER_STATUSES = frozenset({"paid", "partially_refunded", "refunded"})
LIVE_ATTEMPT_STATUSES = frozenset({"created", "paying"})
UNSETTLED_ATTEMPT_STATUSES = LIVE_ATTEMPT_STATUSES | {"needs_attention"}
AUTOMATIC_REFUND_REASONS = frozenset({"duplicate_payment", "order_closed"})
MANUAL_REFUND_REASONS = frozenset({"customer_request", "ops"})

CHARGED_ONCE = "1 charged once"
NOTHING_LOST = "2 nothing lost"
BOUNDED_HEALING = "3 bounded healing"
ONE_LIVE_ATTEMPT = "4 one live attempt"
NO_OVER_REFUND = "5 never over-refund"
IDEMPOTENCY = "idempotency key"


@dataclass(frozen=True)
class Violation:
    invariant: str
    order_id: str
    detail: str
    out_trade_no: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "invariant": self.invariant,
            "order_id": self.order_id,
            "out_trade_no": self.out_trade_no,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Heal:
    """How long the shop took to learn of one capture at the gateway."""

    out_trade_no: str
    order_id: str
    seconds: float
    seen_at_check: bool  # not seen during the run: ``seconds`` is an upper bound


@dataclass
class CheckResult:
    violations: list[Violation] = field(default_factory=list)
    heals: list[Heal] = field(default_factory=list)
    slow_heals: list[Heal] = field(default_factory=list)
    refund_lags: list[float] = field(default_factory=list)
    figures: dict[str, int] = field(default_factory=dict)


def parse_time(text: str | None) -> float | None:
    """An ISO 8601 time from the ledger or the API as epoch seconds."""
    if not text:
        return None
    return dt.datetime.fromisoformat(text).timestamp()


def percentile(values: Iterable[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def live_attempts(order: Mapping[str, Any]) -> list[str]:
    return [
        str(p["out_trade_no"])
        for p in order.get("payments", [])
        if p.get("status") in LIVE_ATTEMPT_STATUSES
    ]


def check_live_attempts(order: Mapping[str, Any]) -> Violation | None:
    """Invariant 4 on one snapshot of an order (one API answer is one database read)."""
    live = live_attempts(order)
    if len(live) <= 1:
        return None
    return Violation(
        ONE_LIVE_ATTEMPT, str(order["id"]), f"{len(live)} live attempts at once: {', '.join(live)}"
    )


def is_settled(order: Mapping[str, Any]) -> bool:
    """Nothing left for the shop to do: a final order, no open attempt, no pending refund."""
    return (
        order.get("status") != "unpaid"
        and not any(
            p.get("status") in UNSETTLED_ATTEMPT_STATUSES for p in order.get("payments", [])
        )
        and not any(r.get("status") == "pending" for r in order.get("refunds", []))
    )


def _money(value: Any) -> int:
    return int(value["amount"]) if isinstance(value, Mapping) else int(value)


def _trade_times(trade: Mapping[str, Any]) -> str:
    """The gateway's times of a trade, for a violation a person has to explain from the log."""
    names = ("created_at", "expires_at", "paid_at", "closed_at")
    times = ", ".join(f"{name} {trade.get(name)}" for name in names if trade.get(name))
    return f"{times}, close_ignored {bool(trade.get('close_ignored'))}"


def check(
    *,
    trades: list[Mapping[str, Any]],
    orders: list[Mapping[str, Any]],
    first_known: Mapping[str, float],
    heal_bound_seconds: float,
    check_time: float,
    otn_hint: Mapping[str, str] | None = None,
    since: float | None = None,
) -> CheckResult:
    """Check invariants 1-5 on a quiet system.

    ``first_known`` maps out_trade_no to when the run first saw the attempt ``succeeded`` in the
    API (the shop knew the capture); ``otn_hint`` maps out_trade_no to the order it was opened
    for, as apply-pay answered, for trades the final views do not mention; ``since`` ignores
    trades created earlier (another user's trades on a shared sandbox).
    """
    result = CheckResult()
    out = result.violations
    payment_of: dict[str, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
    for order in orders:
        for payment in order.get("payments", []):
            payment_of[str(payment["out_trade_no"])] = (order, payment)
    relevant = [
        t
        for t in trades
        if since is None
        or str(t["out_trade_no"]) in payment_of
        or (parse_time(t.get("created_at")) or 0) >= since
    ]
    trades_by_order: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for trade in relevant:
        otn = str(trade["out_trade_no"])
        if otn in payment_of:
            trades_by_order[str(payment_of[otn][0]["id"])].append(trade)

    # 1. Charged once: what the gateway kept equals the total of a paid order, else nothing.
    for order in orders:
        order_id = str(order["id"])
        kept = sum(
            (_money(t["amount"]) if t.get("status") == "PAID" else 0) - int(t.get("refunded") or 0)
            for t in trades_by_order[order_id]
        )
        expected = 0
        if order.get("status") in PAID_ORDER_STATUSES:
            manual = sum(
                _money(r["amount"])
                for r in order.get("refunds", [])
                if r.get("reason") in MANUAL_REFUND_REASONS and r.get("status") == "succeeded"
            )
            expected = _money(order["total"]) - manual
        if kept != expected:
            paid = [
                str(t["out_trade_no"])
                for t in trades_by_order[order_id]
                if t.get("status") == "PAID"
            ]
            out.append(
                Violation(
                    CHARGED_ONCE,
                    order_id,
                    f"order {order.get('status')}: gateway kept {kept}, expected {expected} "
                    f"(captured trades: {', '.join(paid) or 'none'})",
                )
            )

    # 2. Nothing lost, and 3. bounded healing, per capture at the gateway.
    for trade in relevant:
        if trade.get("status") != "PAID":
            continue
        otn = str(trade["out_trade_no"])
        found = payment_of.get(otn)
        if found is None:
            out.append(
                Violation(
                    NOTHING_LOST,
                    (otn_hint or {}).get(otn, "?"),
                    f"captured {_money(trade['amount'])} at {trade.get('channel')}, "
                    "unknown to the shop",
                    otn,
                )
            )
            continue
        order, payment = found
        if payment.get("status") != "succeeded":
            out.append(
                Violation(
                    NOTHING_LOST,
                    str(order["id"]),
                    f"captured at the gateway but the attempt is {payment.get('status')!r}"
                    f" ({_trade_times(trade)})",
                    otn,
                )
            )
            continue
        paid_at = parse_time(trade.get("paid_at"))
        if paid_at is None:
            continue
        known = first_known.get(otn)
        heal = Heal(
            otn,
            str(order["id"]),
            max(0.0, (known if known is not None else check_time) - paid_at),
            known is None,
        )
        result.heals.append(heal)
        if heal.seconds > heal_bound_seconds:
            result.slow_heals.append(heal)
        refunded_at = [parse_time(r.get("created_at")) for r in trade.get("refunds", [])]
        first_refund = min((t for t in refunded_at if t is not None), default=None)
        if first_refund is not None:
            result.refund_lags.append(max(0.0, first_refund - paid_at))

    # 4. One live attempt, in the final state (samples during the run are checked as taken).
    for order in orders:
        found_live = check_live_attempts(order)
        if found_live is not None:
            out.append(found_live)

    # 5. Never over-refund; one automatic refund per cause; the books agree on refunds.
    for trade in relevant:
        otn = str(trade["out_trade_no"])
        captured = _money(trade["amount"]) if trade.get("status") == "PAID" else 0
        refunded = int(trade.get("refunded") or 0)
        order_id = (
            str(payment_of[otn][0]["id"]) if otn in payment_of else (otn_hint or {}).get(otn, "?")
        )
        if refunded > captured:
            out.append(
                Violation(
                    NO_OVER_REFUND, order_id, f"refunded {refunded} of {captured} captured", otn
                )
            )
        if otn in payment_of:
            order, payment = payment_of[otn]
            local = [r for r in order.get("refunds", []) if r.get("payment") == payment.get("id")]
            per_cause = Counter(
                r.get("reason") for r in local if r.get("reason") in AUTOMATIC_REFUND_REASONS
            )
            for reason, count in per_cause.items():
                if count > 1:
                    out.append(
                        Violation(
                            NO_OVER_REFUND, order_id, f"{count} automatic refunds for {reason}", otn
                        )
                    )
            booked = sum(_money(r["amount"]) for r in local if r.get("status") == "succeeded")
            if booked != refunded:
                out.append(
                    Violation(
                        NO_OVER_REFUND,
                        order_id,
                        f"the shop records {booked} refunded, the gateway {refunded}",
                        otn,
                    )
                )

    result.figures = _figures(relevant, orders)
    return result


def _figures(trades: list[Mapping[str, Any]], orders: list[Mapping[str, Any]]) -> dict[str, int]:
    statuses = Counter(str(o.get("status")) for o in orders)
    refunds = [r for o in orders for r in o.get("refunds", [])]
    revived = 0
    for order in orders:
        paid_at, expires_at = parse_time(order.get("paid_at")), parse_time(order.get("expires_at"))
        revived += bool(paid_at and expires_at and paid_at > expires_at)
    captures = [t for t in trades if t.get("status") == "PAID"]
    figures = {
        "orders": len(orders),
        "attempts": sum(len(o.get("payments", [])) for o in orders),
        "trades_at_gateway": len(trades),
        "captures": len(captures),
        "captured_amount": sum(_money(t["amount"]) for t in captures),
        "refunded_amount": sum(int(t.get("refunded") or 0) for t in trades),
        "refunds": len(refunds),
        "duplicates_refunded": sum(r.get("reason") == "duplicate_payment" for r in refunds),
        "late_captures_refunded": sum(r.get("reason") == "order_closed" for r in refunds),
        "orders_paid_after_expiry": revived,
    }
    figures.update({f"orders_{status}": count for status, count in sorted(statuses.items())})
    return figures
