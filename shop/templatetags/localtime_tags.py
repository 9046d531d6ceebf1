import datetime as dt

from django import template

from shop.localtime import format_datetime, format_time

register = template.Library()


@register.filter
def shop_time(value: dt.datetime | None) -> str:
    return format_time(value)


@register.filter
def shop_datetime(value: dt.datetime | None) -> str:
    return format_datetime(value)
