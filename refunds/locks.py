"""Refund row locks, the last in the lock order (see ``orders.locks``)."""

from __future__ import annotations

from refunds.models import Refund


def lock_refund_row(*, out_refund_no: str) -> Refund:
    """Lock and re-read one refund. Caller already holds its order's (and attempt's) row lock."""
    return Refund.objects.select_for_update(of=("self",)).get(out_refund_no=out_refund_no)
