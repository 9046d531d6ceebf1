"""Times as a person reads them: in the shop's time zone (``SHOP_TIME_ZONE``), with its name.

Stored times are UTC; Django's current time zone is the shop's (``TIME_ZONE`` follows
``SHOP_TIME_ZONE``), so every page, the admin and the sandbox cashier agree on one clock.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone


def zone_name(moment: dt.datetime | None = None) -> str:
    """E.g. "CST, UTC+08:00 (Asia/Shanghai)": the abbreviation alone is ambiguous."""
    local = timezone.localtime(moment or timezone.now())
    offset = local.strftime("%z")
    utc = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
    abbreviation = local.tzname() or ""
    names = ", ".join(
        dict.fromkeys(n for n in (abbreviation, utc) if n and not n.startswith(("+", "-")))
    )
    return f"{names} ({settings.SHOP_TIME_ZONE})" if settings.SHOP_TIME_ZONE != "UTC" else names


def format_time(moment: dt.datetime | None) -> str:
    """ "22:15 CST" in the shop's zone; "" for no time."""
    if moment is None:
        return ""
    local = timezone.localtime(moment)
    return f"{local:%H:%M} {local.tzname()}"


def format_datetime(moment: dt.datetime | None) -> str:
    """ "2026-12-03 22:15 CST" in the shop's zone; "" for no time."""
    if moment is None:
        return ""
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
