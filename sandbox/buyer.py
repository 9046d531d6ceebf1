"""What the shopper does: pay a trade. Shared by the cashier's Pay button and ``/sandbox/pay``."""

from __future__ import annotations

from sandbox import alipay, timeutil, wechat
from sandbox.app import Sandbox
from sandbox.state import PayRefused, Trade

CHANNELS = ("alipay", "wechat")


def pay(sb: Sandbox, channel: str, out_trade_no: str) -> Trade:
    """Pay the trade and queue the gateway's notification. Raises PayRefused."""
    if channel not in CHANNELS:
        raise PayRefused("trade_not_found", f"unknown channel {channel!r}")
    with sb.ledger.lock:
        trade = sb.ledger.pay(channel, out_trade_no, now=timeutil.now(), faults=sb.faults)
        if trade.notify_url:
            # Built under the lock so the payload is the state at the moment of payment.
            module = alipay if channel == "alipay" else wechat
            sb.notifier.submit(module.paid_delivery(sb, trade))
    return trade
