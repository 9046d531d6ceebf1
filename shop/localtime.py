"""Times as a person reads them: in the shop's time zone (``SHOP_TIME_ZONE``), with its name.

Stored times are UTC; Django's current time zone is the shop's (``TIME_ZONE`` follows
``SHOP_TIME_ZONE``), so every page, the admin and the sandbox cashier agree on one clock.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone


def zone_parts(moment: dt.datetime | None = None) -> dict[str, str]:
    """The shop's zone at ``moment`` (default now): name, abbreviation, offset ("+08:00")."""
    local = timezone.localtime(moment or timezone.now())
    offset = local.strftime("%z")  # "+0800"
    return {
        "name": timezone.get_current_timezone_name(),
        "abbreviation": local.tzname() or "",
        "offset": f"{offset[:3]}:{offset[3:]}" if offset else "",
    }


def zone_name(moment: dt.datetime | None = None) -> str:
    """E.g. "CST, UTC+08:00 (Asia/Shanghai)": the abbreviation alone is ambiguous."""
    parts = zone_parts(moment)
    utc = f"UTC{parts['offset']}"
    abbreviation = parts["abbreviation"]
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


def format_datetime(moment: dt.datetime | None, *, seconds: bool = False) -> str:
    """E.g. "2026-12-03 22:15 CST" (with ``seconds``: 22:15:30) in the shop's zone; "" for none."""
    if moment is None:
        return ""
    local = timezone.localtime(moment)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")
