"""The chaos checker itself: fed synthetic ledgers and order views with known violations, it must
report each one (a checker that cannot fail proves nothing), and stay quiet on clean data."""

from __future__ import annotations

import random
from typing import Any

import pytest

from chaos.faults import (
    FaultSpecError,
    notification_fault_counts,
    parse_process_faults,
    parse_sandbox_faults,
    plan_process_faults,
    sandbox_settings,
)
from chaos.invariants import (
    BOUNDED_HEALING,
    CHARGED_ONCE,
    IDEMPOTENCY,
    NO_OVER_REFUND,
    NOTHING_LOST,
    ONE_LIVE_ATTEMPT,
    check,
    is_settled,
    percentile,
)
from chaos.observe import Tracker
from chaos.report import Quiescence, RunReport
from chaos.shoppers import draw_plan

T0 = "2026-01-01T00:00:00+00:00"
T0_EPOCH = 1767225600.0


def trade(
    otn: str,
    *,
    amount: int = 1000,
    status: str = "PAID",
    refunded: int = 0,
    paid_at: str | None = T0,
    refunds: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "channel": "alipay",
        "out_trade_no": otn,
        "amount": amount,
        "status": status,
        "paid_at": paid_at if status == "PAID" else None,
        "created_at": T0,
        "refunded": refunded,
        "refunds": refunds or [],
    }


def payment(otn: str, status: str = "succeeded") -> dict[str, Any]:
    return {"id": f"pay_{otn}", "out_trade_no": otn, "status": status, "channel": "alipay"}


def refund(
    otn: str, amount: int = 1000, reason: str = "duplicate_payment", status: str = "succeeded"
) -> dict[str, Any]:
    return {
        "payment": f"pay_{otn}",
        "amount": {"amount": amount, "currency": "CNY"},
        "reason": reason,
        "status": status,
    }


def order(
    oid: str,
    status: str,
    payments: list[dict[str, Any]],
    refunds: list[dict[str, Any]] | None = None,
    total: int = 1000,
) -> dict[str, Any]:
    return {
        "id": oid,
        "status": status,
        "total": {"amount": total, "currency": "CNY"},
        "expires_at": "2026-01-01T00:30:00+00:00",
        "paid_at": T0 if status == "paid" else None,
        "payments": payments,
        "refunds": refunds or [],
    }


def run_check(trades: list[dict[str, Any]], orders: list[dict[str, Any]], **kwargs: Any):
    kwargs.setdefault("first_known", {t["out_trade_no"]: T0_EPOCH + 1 for t in trades})
    kwargs.setdefault("heal_bound_seconds", 13.0)
    kwargs.setdefault("check_time", T0_EPOCH + 60)
    return check(trades=trades, orders=orders, **kwargs)


def kinds(result) -> list[str]:
    return sorted(v.invariant for v in result.violations)


def test_a_clean_run_has_no_violation() -> None:
    trades = [
        trade("A"),
        trade("B", refunded=1000, refunds=[{"created_at": "2026-01-01T00:00:02+00:00"}]),
        trade("C", status="CLOSED"),
    ]
    orders = [
        order("o1", "paid", [payment("A"), payment("B")], [refund("B")]),
        order("o2", "closed", [payment("C", "closed")]),
        order("o3", "closed", []),
    ]
    result = run_check(trades, orders)
    assert result.violations == []
    assert [h.seconds for h in result.heals] == [1.0, 1.0]
    assert result.refund_lags == [2.0]
    assert result.figures["captures"] == 2 and result.figures["duplicates_refunded"] == 1


def test_a_double_charge_is_reported_on_its_order() -> None:
    trades = [trade("A"), trade("B")]
    orders = [order("o1", "paid", [payment("A"), payment("B")])]
    result = run_check(trades, orders)
    assert kinds(result) == [CHARGED_ONCE]
    assert (
        result.violations[0].order_id == "o1"
        and "kept 2000, expected 1000" in result.violations[0].detail
    )


def test_a_capture_on_a_closed_order_known_only_as_closed_is_lost_and_charged() -> None:
    result = run_check([trade("A")], [order("o1", "closed", [payment("A", "closed")])])
    assert kinds(result) == [CHARGED_ONCE, NOTHING_LOST]
    assert {v.order_id for v in result.violations} == {"o1"}


def test_a_capture_the_shop_never_heard_of_is_lost() -> None:
    result = run_check([trade("X")], [order("o1", "closed", [])], otn_hint={"X": "o9"})
    assert kinds(result) == [NOTHING_LOST]
    assert result.violations[0].order_id == "o9" and result.violations[0].out_trade_no == "X"


def test_a_paid_order_without_a_capture_is_reported() -> None:
    result = run_check(
        [trade("A", status="CLOSED")], [order("o1", "paid", [payment("A", "closed")])]
    )
    assert kinds(result) == [CHARGED_ONCE]


def test_two_live_attempts_in_one_view_are_reported() -> None:
    orders = [order("o1", "unpaid", [payment("A", "paying"), payment("B", "created")])]
    result = run_check([], orders)
    assert kinds(result) == [ONE_LIVE_ATTEMPT]
    assert not is_settled(orders[0])


def test_over_refund_double_automatic_refund_and_disagreeing_books_are_reported() -> None:
    over = run_check(
        [trade("A", refunded=1500)],
        [order("o1", "closed", [payment("A")], [refund("A", 1500, "order_closed")])],
    )
    assert NO_OVER_REFUND in kinds(over)
    twice = run_check(
        [trade("A", refunded=1000)],
        [
            order(
                "o1",
                "closed",
                [payment("A")],
                [refund("A", 500, "order_closed"), refund("A", 500, "order_closed")],
            )
        ],
    )
    assert kinds(twice) == [NO_OVER_REFUND]
    books = run_check(
        [trade("A", refunded=0)],
        [order("o1", "closed", [payment("A")], [refund("A", 1000, "order_closed")])],
    )
    assert sorted(kinds(books)) == [CHARGED_ONCE, NO_OVER_REFUND]


def test_a_refund_of_an_uncaptured_trade_is_an_over_refund() -> None:
    result = run_check(
        [trade("A", status="CLOSED", refunded=1000)],
        [order("o1", "closed", [payment("A", "closed")])],
    )
    assert NO_OVER_REFUND in kinds(result)


def test_slow_heals_are_flagged_and_unseen_ones_use_the_check_time() -> None:
    trades = [trade("A"), trade("B")]
    orders = [order("o1", "paid", [payment("A")]), order("o2", "paid", [payment("B")], total=1000)]
    result = run_check(trades, orders, first_known={"A": T0_EPOCH + 30})
    assert result.violations == []
    slow = {h.out_trade_no: h for h in result.slow_heals}
    assert slow["A"].seconds == 30 and not slow["A"].seen_at_check
    assert slow["B"].seconds == 60 and slow["B"].seen_at_check


def test_trades_before_the_run_are_ignored_on_a_shared_sandbox() -> None:
    result = run_check([trade("OLD")], [], since=T0_EPOCH + 10)
    assert result.violations == []


def test_tracker_reports_a_reused_key_and_each_order_with_two_live_attempts_once() -> None:
    tracker = Tracker()
    tracker.note_same_key("k", ["o1", "o1"])
    assert tracker.violations == []
    tracker.note_same_key("k2", ["o1", "o2"])
    two_live = order("o3", "unpaid", [payment("A", "paying"), payment("B", "paying")])
    tracker.observe(two_live)
    tracker.observe(two_live)
    assert [v.invariant for v in tracker.violations] == [IDEMPOTENCY, ONE_LIVE_ATTEMPT]
    assert tracker.counters["snapshots_with_two_live_attempts"] == 2
    tracker.observe(order("o4", "paid", [payment("C")]))
    assert "C" in tracker.first_known


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile([], 50) is None and percentile([3.0], 99) == 3.0


def test_report_exit_code_follows_violations() -> None:
    clean = RunReport(
        seed=1,
        shoppers=1,
        duration=1,
        reproduce="",
        stack={},
        sandbox_faults={},
        process_faults=[],
        notification_faults={},
        figures={},
        actions={},
        calls={},
        violations=[],
        heals=[],
        slow_heals=[],
        refund_lags=[],
        heal_bound_seconds=13,
        quiescence=Quiescence(True, 1.0, True),
    )
    assert clean.exit_code == 0 and "violations: 0" in clean.render()
    bad = run_check([trade("A"), trade("B")], [order("o1", "paid", [payment("A"), payment("B")])])
    clean.violations = bad.violations
    assert clean.exit_code == 1 and "violations: 1" in clean.render() and "o1" in clean.render()


def test_fault_specs_parse_and_refuse_nonsense() -> None:
    assert parse_sandbox_faults("none") == {}
    assert parse_sandbox_faults("all,notify_drop=0.5")["notify_drop"] == 0.5
    assert parse_sandbox_faults("query_error=0.2") == {"query_error": 0.2}
    with pytest.raises(FaultSpecError):
        parse_sandbox_faults("query_eror=0.2")
    with pytest.raises(FaultSpecError):
        parse_sandbox_faults("notify_drop=2")
    body = sandbox_settings({"notify_drop": 0.3})
    assert body["notify_drop"] == 0.3 and body["close_error"] == 0 and body["hang_seconds"] == 3
    assert parse_process_faults("redis_lost,kill_worker") == ("restart_redis", "kill_worker")
    assert len(parse_process_faults("all")) == 6
    with pytest.raises(FaultSpecError):
        parse_process_faults("kill_everything")


def test_process_fault_plans_and_shopper_plans_follow_the_seed() -> None:
    kinds_ = parse_process_faults("all")
    first = plan_process_faults(kinds_, 120, random.Random(7))
    assert first == plan_process_faults(kinds_, 120, random.Random(7))
    assert [e.arg for e in first if e.kind == "phase"] == ["lock_off", "short_lock"]
    assert all(0 <= e.at <= 120 for e in first)
    skus = ["A", "B", "C"]
    assert [draw_plan(random.Random(3), skus) for _ in range(1)] == [
        draw_plan(random.Random(3), skus)
    ]


def test_notification_fault_counts() -> None:
    counts = notification_fault_counts(
        [
            {"dropped": True, "attempts": []},
            {
                "reordered": True,
                "delay": 1.5,
                "attempts": [{"number": 1, "duplicate": True}, {"number": 1}, {"number": 2}],
            },
        ]
    )
    assert counts["notify_dropped"] == 1 and counts["notify_duplicated"] == 1
    assert (
        counts["notify_reordered"] == 1
        and counts["notify_delayed"] == 1
        and counts["notify_retries"] == 1
    )


def test_unsettled_orders_are_recognised() -> None:
    assert not is_settled(order("o", "unpaid", []))
    assert not is_settled(order("o", "paid", [payment("A"), payment("B", "needs_attention")]))
    assert not is_settled(order("o", "paid", [payment("A")], [refund("A", status="pending")]))
    assert is_settled(order("o", "closed", [payment("A", "closed")]))
    assert BOUNDED_HEALING.startswith("3")


def test_quiet_waits_for_a_capture_the_shop_has_not_found_yet() -> None:
    """A closed order whose trade the gateway captured (a lost callback on a closed trade) is
    not quiet until the shop's attempt is succeeded: its watch has yet to find the capture."""
    from chaos.runner import _behind_the_gateway

    view = {
        "status": "closed",
        "payments": [
            {"out_trade_no": "OPA", "status": "closed"},
            {"out_trade_no": "OPB", "status": "closed"},
        ],
        "refunds": [],
    }
    trades = {"OPA": {"status": "PAID"}, "OPB": {"status": "CLOSED"}}
    assert is_settled(view)
    assert _behind_the_gateway(view, trades) == ["OPA"]
    view["payments"][0]["status"] = "succeeded"
    assert _behind_the_gateway(view, trades) == []
