"""Money is an integer number of minor units plus an ISO currency code, everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

MINOR_UNITS = {"CNY": 2, "USD": 2, "EUR": 2, "JPY": 0}


@dataclass(frozen=True)
class Money:
    amount: int
    currency: str

    def as_dict(self) -> dict[str, int | str]:
        return {"amount": self.amount, "currency": self.currency}

    def __str__(self) -> str:
        return format_money(self.amount, self.currency)


def format_money(amount: int, currency: str) -> str:
    digits = MINOR_UNITS.get(currency, 2)
    major = Decimal(amount).scaleb(-digits)
    symbol = {"CNY": "¥", "USD": "$", "EUR": "€", "JPY": "¥"}.get(currency, currency + " ")
    return f"{symbol}{major:,.{digits}f}"
