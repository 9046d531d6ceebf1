"""Clock and the two gateways' time formats.

Both gateways live in China time (UTC+8): Alipay speaks naive ``yyyy-MM-dd HH:mm:ss`` in that zone,
WeChat Pay speaks RFC 3339 with an explicit offset. Internally everything is an aware UTC datetime,
converted only at the wire.
"""

from __future__ import annotations

import datetime as dt

CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
ALIPAY_FORMAT = "%Y-%m-%d %H:%M:%S"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def alipay_time(moment: dt.datetime) -> str:
    return moment.astimezone(CHINA).strftime(ALIPAY_FORMAT)


def parse_alipay_time(text: str) -> dt.datetime:
    """``yyyy-MM-dd HH:mm:ss`` read as China time. Raises ValueError when malformed."""
    return dt.datetime.strptime(text.strip(), ALIPAY_FORMAT).replace(tzinfo=CHINA)


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


def parse_rfc3339(text: str) -> dt.datetime:
    """RFC 3339 with a mandatory offset (WeChat rejects local times). Raises ValueError."""
    if "T" not in text:
        raise ValueError("not RFC 3339: missing 'T'")
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("RFC 3339 time needs an offset")
    return moment


def iso_utc(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(dt.UTC).isoformat() if moment else None


def china_date(moment: dt.datetime) -> dt.date:
    """The bill date a moment belongs to: both gateways cut their days at midnight China time."""
    return moment.astimezone(CHINA).date()
