"""How long gateway events are kept. Verified events are the audit trail and stay; unverified
ones (forged, malformed, oversized, unsigned returns) can be sent by anyone, so they are kept
small (``event_record`` truncates them) and purged after ``UNVERIFIED_EVENT_RETENTION_HOURS``."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from payments.models import GatewayEvent

BATCH = 5000


def unverified_events_purge(*, now: dt.datetime | None = None) -> int:
    """Delete unverified events older than the retention period, in batches; returns how many."""
    cutoff = (now or timezone.now()) - dt.timedelta(hours=settings.UNVERIFIED_EVENT_RETENTION_HOURS)
    deleted = 0
    while True:
        ids = list(
            GatewayEvent.objects.filter(verified=False, created_at__lt=cutoff).values_list(
                "pk", flat=True
            )[:BATCH]
        )
        if not ids:
            return deleted
        deleted += GatewayEvent.objects.filter(pk__in=ids, verified=False).delete()[0]
