"""How every admin module shows money, times and long ids, and names the staff user in a cause.

One place, so that a list, an inline and a read-only form field show the same amount and the
same instant the same way: money with its currency ("¥59.00", sorted by the integer minor
units), times in the time zone admin pages are shown in, with its abbreviation
("2026-12-03 22:15 CST": a bare "22:15" is ambiguous to someone reading UTC logs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from shop.localtime import format_datetime, zone_parts
from shop.money import format_money

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

EMPTY = "—"
# Kept when a long id is shortened in a list; the whole id stays in the title (and search).
SHORT_ID_CHARS = 12
# StateChange.cause holds at most this many characters.
CAUSE_MAX_CHARS = 80

# A display method made by the factories below: (model admin, object) -> text.
Column = Callable[[Any, Any], str]


def local_time(value: dt.datetime | None, *, seconds: bool = False) -> str:
    """``value`` in the shop's time zone with its abbreviation, as the shopper pages show it."""
    return format_datetime(value, seconds=seconds) if value is not None else EMPTY


def time_zone_shown() -> dict[str, str]:
    """Which zone admin times are shown in, e.g. Asia/Shanghai, CST, +08:00 (plain data)."""
    return zone_parts()


def money(amount: int | None, currency: str) -> str:
    return EMPTY if amount is None else format_money(amount, currency)


def short_id(value: str) -> SafeString | str:
    """A long id cut to its first characters (lists fit a laptop screen); all of it on hover."""
    if not value:
        return EMPTY
    if len(value) <= SHORT_ID_CHARS + 1:
        return value
    return format_html('<span title="{}">{}…</span>', value, value[:SHORT_ID_CHARS])


def staff_cause(request: HttpRequest) -> str:
    """The cause or source an admin action passes to a service: "admin:<username>"."""
    return f"admin:{request.user.get_username()}"[:CAUSE_MAX_CHARS]


def time_column(field: str, description: StrOrPromise, *, seconds: bool = False) -> Column:
    """A display method showing the datetime ``field`` with its zone, sorted by the field."""

    @admin.display(description=description, ordering=field)
    def column(model_admin: Any, obj: Any) -> str:
        return local_time(getattr(obj, field), seconds=seconds)

    return column


def money_column(
    field: str,
    description: StrOrPromise,
    *,
    currency: Callable[[Any], str] = lambda obj: str(obj.currency),
) -> Column:
    """A display method showing the minor units in ``field`` as money, sorted by the field."""

    @admin.display(description=description, ordering=field)
    def column(model_admin: Any, obj: Any) -> str:
        return money(getattr(obj, field), currency(obj))

    return column


def short_id_column(field: str, description: StrOrPromise) -> Column:
    """A display method showing the long id in ``field`` shortened, sorted by the field."""

    @admin.display(description=description, ordering=field)
    def column(model_admin: Any, obj: Any) -> str:
        return short_id(str(getattr(obj, field)))

    return column


def read_only_fields(model: type[Model], **shown_as: str) -> tuple[str, ...]:
    """Every field of ``model`` for a read-only change page, in model order, with the fields
    named in ``shown_as`` (money in minor units) replaced by the display method that formats
    them. Use it as both ``fields`` and ``readonly_fields`` so no raw field becomes editable."""
    return tuple(shown_as.get(f.name, f.name) for f in model._meta.fields)
