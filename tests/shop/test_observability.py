"""/metrics access rules, the request id header, and the JSON log lines' context fields."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest
from django.conf import settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from shop import logs, metrics

pytestmark = pytest.mark.django_db


def _json_logger(stream: io.StringIO) -> logging.Logger:
    """A logger wired exactly like the console handler of ``LOGGING`` (JSON), into ``stream``."""
    config = logs.logging_config(fmt="json", level="INFO")
    formatter_config = dict(config["formatters"]["json"])
    formatter_config.pop("()")
    from pythonjsonlogger.json import JsonFormatter

    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(**formatter_config))
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger("tests.observability")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_metrics_answers_loopback_without_a_token(client: Client, settings) -> None:
    settings.METRICS_TOKEN = ""
    metrics.callback_received(channel="alipay", outcome="rejected", reason="bad_signature")
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {"oncepay_callbacks", "oncepay_attempts_needing_attention", "oncepay_outbox_events"} <= (
        names
    )
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_metrics_with_a_token_requires_it_from_everyone(client: Client, settings) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 401
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope", REMOTE_ADDR="127.0.0.1")
    assert wrong.status_code == 401
    ok = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token", REMOTE_ADDR="10.1.2.3")
    assert ok.status_code == 200
    assert client.post("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 405


def test_request_id_is_taken_from_the_caller_or_made_and_always_echoed(client: Client) -> None:
    given = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert given["X-Request-ID"] == "abc-123"
    made = client.get("/healthz")
    assert len(made["X-Request-ID"]) == 32
    hostile = client.get("/healthz", HTTP_X_REQUEST_ID='x" injected\n{"level": "ERROR"}')
    assert hostile["X-Request-ID"] != 'x" injected\n{"level": "ERROR"}'
    assert len(hostile["X-Request-ID"]) == 32


def test_log_lines_are_json_with_the_bound_payment_context() -> None:
    stream = io.StringIO()
    logger = _json_logger(stream)
    logs.clear()  # a request served earlier on this thread leaves its id bound until the next
    with logs.scope(request_id="req-1"):
        logger.info("before the payment is known")
        logs.bind(order_id="ord_abc", out_trade_no="OTN123")
        logger.warning("about %s", "it")
    logger.info("outside")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "req-1" and first["out_trade_no"] == ""
    assert second == second | {
        "message": "about it",
        "level": "WARNING",
        "logger": "tests.observability",
        "request_id": "req-1",
        "order_id": "ord_abc",
        "out_trade_no": "OTN123",
    }
    assert "time" in second and "process" in second
    assert third["request_id"] == "" and third["order_id"] == ""


def test_text_format_stays_available_for_development() -> None:
    config = logs.logging_config(fmt="text", level="DEBUG")
    assert config["handlers"]["console"]["formatter"] == "text"
    formatter = logs.TextFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "paid", None, None)
    record.out_trade_no, record.order_id, record.request_id = "OTN1", "", "r1"
    assert formatter.format(record) == "INFO paid [request_id=r1 out_trade_no=OTN1]"
    with pytest.raises(ValueError):
        logs.logging_config(fmt="xml", level="INFO")


def test_the_test_run_logs_json_by_default() -> None:
    assert settings.LOG_FORMAT == "json"
    assert settings.LOGGING["handlers"]["console"]["formatter"] == "json"


def test_figures_read_back_from_a_scrape_as_prometheus_would_compute_them() -> None:
    text = "\n".join(
        [
            "# TYPE oncepay_callbacks_total counter",
            'oncepay_callbacks_total{channel="alipay",outcome="verified",reason="trade"} 3.0',
            'oncepay_callbacks_total{channel="wechat",outcome="verified",reason="trade"} 1.0',
            'oncepay_callbacks_total{channel="wechat",outcome="duplicate",reason=""} 2.0',
            "# TYPE oncepay_payment_healed_seconds histogram",
            'oncepay_payment_healed_seconds_bucket{channel="wechat",source="poll",le="1.0"} 0.0',
            'oncepay_payment_healed_seconds_bucket{channel="wechat",source="poll",le="2.0"} 2.0',
            'oncepay_payment_healed_seconds_bucket{channel="wechat",source="poll",le="4.0"} 4.0',
            'oncepay_payment_healed_seconds_bucket{channel="wechat",source="poll",le="+Inf"} 4.0',
            'oncepay_payment_healed_seconds_count{channel="wechat",source="poll"} 4.0',
            'oncepay_payment_healed_seconds_sum{channel="wechat",source="poll"} 9.0',
            "",
        ]
    )
    result = metrics.figures(text)
    assert result["callbacks"] == {"duplicate": 2, "verified": 4}
    assert result["healed"] == {"count": 4, "p50": 2.0, "p99": pytest.approx(3.96)}
    assert result["known"] == {"count": 0, "p50": None, "p99": None}


def test_djangos_own_request_log_line_carries_the_request_id(client: Client) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.TextFormatter("%(message)s"))
    django_request = logging.getLogger("django.request")
    django_request.addHandler(handler)
    try:
        response = client.get("/no-such-page", HTTP_X_REQUEST_ID="rid-404")
    finally:
        django_request.removeHandler(handler)
    assert response.status_code == 404
    assert "request_id=rid-404" in stream.getvalue()
