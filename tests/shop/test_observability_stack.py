"""Metrics and logs over the real stack: the live server, the sandbox, and the Celery worker as
a separate process (so its counts reach /metrics only through the multiprocess directory)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from orders.models import Order
from payments.models import PaymentAttempt
from refunds.models import Refund
from refunds.services import refund_request
from shop import logs
from tests.conftest import make_product
from tests.support.notifications import alipay_notify_body, alipay_notify_form
from tests.support.shopper import Shopper, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str) -> Samples:
    response = requests.get(f"{base}/metrics", timeout=30)
    assert response.status_code == 200, response.text
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (n, ls), value in samples.items() if n == name and wanted <= ls)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


@pytest.fixture
def web_log(tmp_path: Path) -> Iterator[Path]:
    """The web's log lines (the live server runs in this process), written as the console
    handler writes them: JSON, with the context filter."""
    path = tmp_path / "web.log"
    root = logging.getLogger()
    console = next(
        h
        for h in root.handlers
        if isinstance(h.formatter, logging.Formatter)
        and type(h.formatter).__name__ == "JsonFormatter"
    )
    handler = logging.FileHandler(path)
    handler.setFormatter(console.formatter)
    handler.addFilter(logs.ContextFilter())
    root.addHandler(handler)
    yield path
    root.removeHandler(handler)
    handler.close()


def _paid_by_callback(shopper: Shopper, sandbox, channel: str) -> dict:
    attempt = shopper.pay(channel, "pc").json()
    assert sandbox.pay(channel, attempt["out_trade_no"]).status_code == 200
    wait_for(lambda: shopper.view()["status"] == "paid", timeout=20)
    return attempt


def test_metrics_move_for_a_payment_a_duplicate_a_healed_loss_and_a_refund(
    stack, sandbox, live_server
) -> None:
    make_product("TEA", price=3300, stock=20)
    base = live_server.url
    before = scrape(base)

    # 1. A real payment, told by its callback. The gateway answers no query meanwhile, so the
    # worker's first poll cannot learn of the capture before the callback does (a busy machine
    # may run that poll before the sandbox's notification arrives).
    sandbox.set_faults(query_error=1)
    first = Shopper(base)
    first.order()
    paid = _paid_by_callback(first, sandbox, "alipay")
    after_pay = wait_for(
        lambda: (
            (s := scrape(base))
            and moved(before, s, "oncepay_callbacks_total", channel="alipay", outcome="verified")
            >= 1
            and s
        ),
    )
    assert moved(before, after_pay, "oncepay_apply_pay_total", channel="alipay", outcome="new") == 1
    assert (
        moved(
            before,
            after_pay,
            "oncepay_gateway_calls_total",
            channel="alipay",
            operation="prepay",
            outcome="created",
        )
        == 1
    )
    assert (
        moved(
            before,
            after_pay,
            "oncepay_payment_known_seconds_count",
            channel="alipay",
            source="notification",
        )
        == 1
    )
    assert (
        moved(
            before,
            after_pay,
            "oncepay_captures_known_total",
            channel="alipay",
            source="notification",
            decision="paid",
        )
        == 1
    )
    assert moved(before, after_pay, "oncepay_payment_known_seconds_sum", channel="alipay") < 20

    # 2. The same notification twice: the second is counted as a duplicate, nothing else moves.
    attempt = PaymentAttempt.objects.get(out_trade_no=paid["out_trade_no"])
    body = alipay_notify_body(
        alipay_notify_form(attempt.out_trade_no, attempt.amount, notify_id="OBS-DUP-1")
    )
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for _ in range(2):
        r = requests.post(f"{base}/payments/notify/alipay/", data=body, headers=form, timeout=30)
        assert r.text == "success"
    after_dup = scrape(base)
    assert moved(after_pay, after_dup, "oncepay_callbacks_total", outcome="duplicate") == 1
    assert moved(after_pay, after_dup, "oncepay_captures_known_total") == 0

    # 3. A lost callback: the worker's poll finds the capture, and the heal time is recorded.
    sandbox.set_faults(notify_drop=1, query_error=0)
    lost = Shopper(base)
    lost.order()
    healed_attempt = lost.pay("wechat", "pc").json()
    assert sandbox.pay("wechat", healed_attempt["out_trade_no"]).status_code == 200
    wait_for(lambda: lost.view()["status"] == "paid", timeout=30)
    after_heal = wait_for(
        lambda: (
            (s := scrape(base))
            and moved(after_dup, s, "oncepay_payment_healed_seconds_count", channel="wechat") >= 1
            and s
        ),
    )
    assert (
        moved(
            after_dup,
            after_heal,
            "oncepay_payment_healed_seconds_count",
            channel="wechat",
            source="poll",
        )
        == 1
    )
    assert (
        moved(
            after_dup,
            after_heal,
            "oncepay_poll_results_total",
            channel="wechat",
            answer="paid",
            decision="paid",
        )
        == 1
    )
    assert moved(after_dup, after_heal, "oncepay_callbacks_total", channel="wechat") == 0
    assert (
        moved(
            after_dup,
            after_heal,
            "oncepay_gateway_calls_total",
            channel="wechat",
            operation="query",
        )
        >= 1
    )
    # The worker's poll sweeps run and are timed (beat → worker; a worker just restarted by an
    # earlier test may not have finished one yet).
    swept = wait_for(
        lambda: (s := scrape(base)) and total(s, "oncepay_sweep_seconds_count", sweep="poll") and s
    )
    assert total(swept, "oncepay_sweep_last_run_timestamp_seconds", sweep="poll") > 0
    assert total(after_heal, "oncepay_order_lock_wait_seconds_count") > total(
        before, "oncepay_order_lock_wait_seconds_count"
    )

    # 4. A refund, executed by the worker at the sandbox.
    sandbox.set_faults(notify_drop=0)
    order = Order.objects.get(public_id=first.order_id)
    refund = refund_request(order_id=order.pk, amount=1000, reason="customer_request")
    wait_for(lambda: Refund.objects.get(pk=refund.pk).status == "succeeded", timeout=30)
    after_refund = wait_for(
        lambda: (
            (s := scrape(base))
            and moved(
                after_heal,
                s,
                "oncepay_refunds_total",
                cause="customer_request",
                outcome="succeeded",
            )
            == 1
            and s
        ),
    )
    assert (
        moved(
            after_heal,
            after_refund,
            "oncepay_gateway_calls_total",
            operation="refund",
            outcome="succeeded",
        )
        == 1
    )
    # Nothing needs attention: the gauge is there, at zero.
    assert total(after_refund, "oncepay_attempts_needing_attention") == 0
    assert ("oncepay_attempts_live", frozenset({("channel", "alipay")})) in after_refund


def test_one_payment_is_followed_through_web_and_worker_logs_by_its_out_trade_no(
    stack, sandbox, live_server, web_log: Path
) -> None:
    make_product("TEA", price=3300, stock=20)
    sandbox.set_faults(notify_drop=1)  # the worker's poll learns of the capture
    shopper = Shopper(live_server.url)
    shopper.order()
    response = shopper.pay("alipay", "pc")
    request_id = response.headers["X-Request-ID"]
    out_trade_no = response.json()["out_trade_no"]
    assert sandbox.pay("alipay", out_trade_no).status_code == 200
    wait_for(lambda: shopper.view()["status"] == "paid", timeout=30)
    worker_log = stack.logs[0]

    def lines(path: Path) -> list[dict]:
        found = []
        for line in path.read_text(errors="replace").splitlines():
            if out_trade_no in line and line.startswith("{"):
                found.append(json.loads(line))
        return found

    worker = wait_for(
        lambda: [r for r in lines(worker_log) if "via poll" in r["message"]], timeout=20
    )
    web = lines(web_log)
    assert web, "the web logged nothing about the payment"
    for record in web + worker:
        assert record["out_trade_no"] == out_trade_no, record
        assert record["order_id"] == shopper.order_id, record
        assert record["request_id"], record
    assert any(r["request_id"] == request_id and "apply-pay new" in r["message"] for r in web)
    assert any(r["logger"] == "payments.decision" and "paid" in r["message"] for r in worker)
    # The poll task the apply-pay request sent carries its request id into the worker.
    assert any(r["request_id"] == request_id for r in lines(worker_log)), worker
