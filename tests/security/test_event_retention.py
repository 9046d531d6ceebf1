"""Stored callback bodies are bounded: anything unverified is kept small and purged on a
schedule; verified events stay."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from payments.events import event_record
from payments.models import GatewayEvent
from payments.retention import unverified_events_purge
from shop.schedules import beat_schedule

pytestmark = pytest.mark.django_db(transaction=True)


def test_junk_callbacks_and_returns_store_at_most_a_small_prefix(settings) -> None:
    client = Client()
    junk = "x" * 60000
    client.post(
        "/payments/notify/alipay/",
        f"out_trade_no=OPX&sign=forged&body={junk}",
        content_type="application/x-www-form-urlencoded",
    )
    client.post(
        "/payments/notify/wechat/", '{"id": "' + junk + '"}', content_type="application/json"
    )
    client.get("/payments/return/alipay/", {"out_trade_no": "OPX", "junk": junk[:4000]})
    events = list(GatewayEvent.objects.all())
    assert len(events) == 3
    for event in events:
        assert not event.verified
        assert len(event.body) <= settings.UNVERIFIED_EVENT_BODY_CHARS


def test_unverified_events_are_purged_after_the_retention_verified_ones_kept(settings) -> None:
    settings.UNVERIFIED_EVENT_RETENTION_HOURS = 72
    old = timezone.now() - dt.timedelta(hours=73)
    stale_junk = event_record(channel="alipay", kind="notification", verified=False, body="junk")
    fresh_junk = event_record(channel="alipay", kind="notification", verified=False, body="new")
    kept = event_record(channel="alipay", kind="notification", verified=True, body="signed")
    GatewayEvent.objects.filter(pk__in=[stale_junk.pk, kept.pk]).update(created_at=old)
    assert unverified_events_purge() == 1
    assert set(GatewayEvent.objects.values_list("pk", flat=True)) == {fresh_junk.pk, kept.pk}
    assert GatewayEvent.objects.get(pk=kept.pk).body == "signed"  # verified bodies kept whole


def test_the_purge_runs_on_beats_schedule() -> None:
    from shop.celery import app

    entry = beat_schedule()["purge-unverified-events"]
    assert entry["task"] == "payments.tasks.purge_unverified_events"
    app.loader.import_default_modules()
    assert "payments.tasks.purge_unverified_events" in app.tasks
