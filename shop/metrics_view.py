"""``GET /metrics``: the Prometheus text format, summed over every web and worker process.

With ``METRICS_TOKEN`` set, a scrape must send ``Authorization: Bearer <token>``; without it,
only loopback addresses are answered (a Prometheus on the same host, or a tunnel).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class DatabaseCollector(Collector):
    """Gauges read from PostgreSQL on each scrape: a handful of indexed aggregate queries."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db.models import Count, Min
        from django.utils import timezone

        from payments.models import LIVE_STATUSES, AttemptStatus, PaymentAttempt
        from shop.models import OutboxEvent

        attention = GaugeMetricFamily(
            "oncepay_attempts_needing_attention",
            "Payment attempts in needs_attention now, by channel and reason.",
            labels=["channel", "reason"],
        )
        rows = (
            PaymentAttempt.objects.filter(status=AttemptStatus.NEEDS_ATTENTION)
            .values("channel", "attention_reason")
            .annotate(n=Count("pk"))
        )
        for row in rows:
            attention.add_metric([row["channel"], row["attention_reason"] or "unknown"], row["n"])
        yield attention

        live = GaugeMetricFamily(
            "oncepay_attempts_live",
            "Payment attempts a shopper can pay now (created or paying), by channel.",
            labels=["channel"],
        )
        from payments.gateways.registry import CHANNELS

        counts = dict(
            PaymentAttempt.objects.filter(status__in=LIVE_STATUSES)
            .values_list("channel")
            .annotate(n=Count("pk"))
            .values_list("channel", "n")
        )
        for channel in CHANNELS:
            live.add_metric([channel], counts.get(channel, 0))
        yield live

        backlog = GaugeMetricFamily(
            "oncepay_outbox_events", "Outbox events by status.", labels=["status"]
        )
        by_status = dict(
            OutboxEvent.objects.exclude(status=OutboxEvent.Status.DELIVERED)
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        for status in (OutboxEvent.Status.PENDING, OutboxEvent.Status.DEAD):
            backlog.add_metric([status], by_status.get(status, 0))
        yield backlog

        oldest = OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).aggregate(
            t=Min("created_at")
        )["t"]
        age = GaugeMetricFamily(
            "oncepay_outbox_oldest_pending_seconds",
            "Age of the oldest undelivered outbox event (0 when none is pending).",
        )
        age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
        yield age


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        status = 401 if settings.METRICS_TOKEN else 403
        response = HttpResponse("forbidden\n", status=status, content_type="text/plain")
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
