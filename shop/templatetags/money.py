from django import template

from shop.money import format_money

register = template.Library()


@register.simple_tag
def money(amount: int, currency: str) -> str:
    return format_money(int(amount), currency)
