"""Every metric the shop exports, defined once, and the one call per event that moves each.

Prometheus multiprocess mode: each gunicorn and Celery process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (set by ``shop.settings`` before this module is imported), and
``/metrics`` adds them up, so counts from the web and the worker show in one scrape. Gauges
that describe the database (attempts needing attention, live attempts, outbox backlog) are not
kept by any process: ``shop.metrics_view`` computes them with cheap aggregate queries at scrape
time, so every scrape tells the truth even right after a restart.

Label values are small closed sets (channels, outcomes, reason codes): never an id.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

# Seconds from the gateway's capture to the shop knowing it: a callback takes well under a
# second; a healed loss takes one or more poll steps (10 s … 5 min) or a day (reconciliation).
KNOW_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 86400, 172800)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 15)

CALLBACKS = Counter(
    "oncepay_callbacks_total",
    "Gateway notifications received, by what became of them: verified (applied), duplicate "
    "(already applied), rejected (with its reason), busy (order locked: the gateway retries).",
    ["channel", "outcome", "reason"],
)
APPLY_PAY = Counter(
    "oncepay_apply_pay_total",
    "Apply-pay requests: new (an attempt opened at the gateway), reused (the live attempt "
    "returned), switched (another channel or client's attempt closed first), refused (code).",
    ["channel", "outcome", "code"],
)
GATEWAY_CALLS = Counter(
    "oncepay_gateway_calls_total",
    "Calls to a payment gateway by operation and the outcome it gave; error is an exception.",
    ["channel", "operation", "outcome"],
)
GATEWAY_LATENCY = Histogram(
    "oncepay_gateway_call_seconds",
    "Latency of calls to a payment gateway.",
    ["channel", "operation"],
    buckets=LATENCY_BUCKETS,
)
POLLS = Counter(
    "oncepay_poll_results_total",
    "Polls of one attempt: what the gateway answered and what the decision service made of it.",
    ["channel", "answer", "decision"],
)
TIME_TO_KNOW = Histogram(
    "oncepay_payment_known_seconds",
    "Seconds from the gateway's capture time (paid_at) to the shop recording the capture, by "
    "the source that told us (notification, poll, close, reconciliation, ...).",
    ["channel", "source"],
    buckets=KNOW_BUCKETS,
)
TIME_TO_HEAL = Histogram(
    "oncepay_payment_healed_seconds",
    "Seconds from capture to the shop knowing it, for captures learnt other than through a "
    "notification (a lost or late callback healed by a poll, a close or reconciliation).",
    ["channel", "source"],
    buckets=KNOW_BUCKETS,
)
CAPTURES = Counter(
    "oncepay_captures_known_total",
    "Captures recorded, by source and by what they meant for the order (paid, duplicate, "
    "late, revived).",
    ["channel", "source", "decision"],
)
REFUNDS = Counter(
    "oncepay_refunds_total",
    "Refund events: recorded (automatic ones, by cause) and final gateway results "
    "(succeeded, failed), by cause (duplicate_payment, order_closed, customer_request, ops).",
    ["cause", "outcome"],
)
OUTBOX_DELIVERIES = Counter(
    "oncepay_outbox_deliveries_total",
    "Outbox delivery tries: delivered, failed (retried later) or dead (given up).",
    ["outcome"],
)
LOCK_WAIT = Histogram(
    "oncepay_order_lock_wait_seconds",
    "Seconds spent waiting for the Redis order lock, acquired or not.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
LOCK_TIMEOUTS = Counter(
    "oncepay_order_lock_timeouts_total",
    "Order lock waits that gave up (the caller answered busy or left it to a retry).",
)
LOCK_UNAVAILABLE = Counter(
    "oncepay_order_lock_unavailable_total",
    "Order lock requests that found Redis unreachable (the row locks alone kept it correct).",
)
SWEEP_SECONDS = Histogram(
    "oncepay_sweep_seconds",
    "Duration of one run of a beat sweep.",
    ["sweep"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 600),
)
SWEEP_ROWS = Counter(
    "oncepay_sweep_rows_total", "Rows a beat sweep claimed and handled.", ["sweep"]
)
SWEEP_LAST_RUN = Gauge(
    "oncepay_sweep_last_run_timestamp_seconds",
    "Unix time a sweep last finished: it only runs when beat sends it and a worker takes it.",
    ["sweep"],
    multiprocess_mode="max",
)
RECONCILIATION_FINDINGS = Counter(
    "oncepay_reconciliation_findings_total",
    "Reconciliation findings recorded, by channel, kind and state (open, or healed: fixed by "
    "the run itself).",
    ["channel", "kind", "state"],
)


# --- one call per event -------------------------------------------------------------------------


def callback_received(*, channel: str, outcome: str, reason: str = "") -> None:
    CALLBACKS.labels(channel=channel, outcome=outcome, reason=reason).inc()


def apply_pay_result(*, channel: str, outcome: str, code: str = "") -> None:
    APPLY_PAY.labels(channel=channel, outcome=outcome, code=code).inc()


def poll_result(*, channel: str, answer: str, decision: str) -> None:
    POLLS.labels(channel=channel, answer=answer, decision=decision).inc()


def capture_known(*, channel: str, source: str, decision: str, paid_at: dt.datetime) -> None:
    """A capture was recorded now; ``paid_at`` is the gateway's capture time."""
    from django.utils import timezone

    seconds = max(0.0, (timezone.now() - paid_at).total_seconds())
    # A source may name what caused it ("notification:<event id>", "admin:<user>"); only the
    # kind is a label, or every event would be a series of its own.
    source = source.partition(":")[0]
    CAPTURES.labels(channel=channel, source=source, decision=decision).inc()
    TIME_TO_KNOW.labels(channel=channel, source=source).observe(seconds)
    if source != "notification":
        TIME_TO_HEAL.labels(channel=channel, source=source).observe(seconds)


def refund_event(*, cause: str, outcome: str) -> None:
    REFUNDS.labels(cause=cause, outcome=outcome).inc()


def outbox_delivery(*, outcome: str) -> None:
    OUTBOX_DELIVERIES.labels(outcome=outcome).inc()


def lock_waited(*, seconds: float, acquired: bool) -> None:
    LOCK_WAIT.observe(seconds)
    if not acquired:
        LOCK_TIMEOUTS.inc()


def lock_unavailable() -> None:
    LOCK_UNAVAILABLE.inc()


def sweep_ran(*, sweep: str, seconds: float, rows: int) -> None:
    SWEEP_SECONDS.labels(sweep=sweep).observe(seconds)
    SWEEP_ROWS.labels(sweep=sweep).inc(rows)
    SWEEP_LAST_RUN.labels(sweep=sweep).set(time.time())


def reconciliation_finding(*, channel: str, kind: str, state: str) -> None:
    RECONCILIATION_FINDINGS.labels(channel=channel, kind=kind, state=state).inc()


F = TypeVar("F", bound=Callable[..., Any])


def gateway_call(operation: str) -> Callable[[F], F]:
    """Decorate a gateway adapter method (``self.channel`` names the channel): counts the call
    by the outcome of what it returned (``.outcome``, else ``ok``; ``error`` if it raised) and
    times it."""

    def decorate(method: F) -> F:
        @wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            channel = getattr(self, "channel", "unknown")
            started = time.perf_counter()
            outcome = "error"
            try:
                result = method(self, *args, **kwargs)
                outcome = str(getattr(result, "outcome", "ok"))
                return result
            finally:
                GATEWAY_LATENCY.labels(channel=channel, operation=operation).observe(
                    time.perf_counter() - started
                )
                GATEWAY_CALLS.labels(channel=channel, operation=operation, outcome=outcome).inc()

        return wrapper  # type: ignore[return-value]

    return decorate


# --- figures read back from a scrape (the chaos report and anything else that summarises) ------


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """``histogram_quantile`` as Prometheus computes it: linear within the bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            width = count - lower_count
            share = (rank - lower_count) / width if width else 0.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def figures(text: str) -> dict[str, Any]:
    """The figures a report needs, from the text of ``/metrics``: callbacks by outcome, and the
    count, p50 and p99 of time to know a payment and of time to heal (every channel and
    source). These are the shop's own definitions (the metrics above), so a report and a
    dashboard say the same thing."""
    from prometheus_client.parser import text_string_to_metric_families

    callbacks: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {"known": {}, "healed": {}}
    names = {"oncepay_payment_known_seconds": "known", "oncepay_payment_healed_seconds": "healed"}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "oncepay_callbacks_total":
                outcome = sample.labels["outcome"]
                callbacks[outcome] = callbacks.get(outcome, 0) + sample.value
            elif sample.name.removesuffix("_bucket") in names and sample.name.endswith("_bucket"):
                which = buckets[names[sample.name.removesuffix("_bucket")]]
                bound = float(sample.labels["le"])
                which[bound] = which.get(bound, 0) + sample.value
    result: dict[str, Any] = {"callbacks": {k: int(v) for k, v in sorted(callbacks.items())}}
    for key, by_bound in buckets.items():
        pairs = list(by_bound.items())
        result[key] = {
            "count": int(max(by_bound.values(), default=0)),
            "p50": _quantile(pairs, 0.5),
            "p99": _quantile(pairs, 0.99),
        }
    return result
