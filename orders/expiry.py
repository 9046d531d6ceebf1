"""Forgetting old idempotency keys. (Expired orders are closed by ``payments.expiry``.)"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from orders.models import IdempotencyKey


def purge_idempotency_keys() -> int:
    cutoff = timezone.now() - dt.timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
