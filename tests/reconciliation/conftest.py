"""Helpers for reconciliation tests: shoppers paying through the sandbox, and the findings of a
run as plain tuples so a test can say exactly which findings it expects."""

from __future__ import annotations

from typing import Any

import pytest

from orders.models import Order
from payments.models import PaymentAttempt
from reconciliation.models import Finding, StatementRun
from refunds.models import Refund, RefundReason
from refunds.services import refund_execute, refund_request
from tests.conftest import make_product
from tests.support.shopper import Shopper, open_action, wait_for


def findings(run: StatementRun) -> set[tuple[str, str, str]]:
    return {(f.kind, f.state, f.out_trade_no) for f in Finding.objects.filter(run=run)}


class Shop:
    """Shoppers at the live server, paying at the live sandbox."""

    def __init__(self, base_url: str, sandbox: Any) -> None:
        self.base_url = base_url
        self.sandbox = sandbox
        # Shoppers' e-mails come from id(): keep them alive so no two share one (identical
        # orders within the dedupe window are one order).
        self.shoppers: list[Shopper] = []
        make_product("TEA", price=5900, stock=1000)

    def shopper(self) -> Shopper:
        shopper = Shopper(self.base_url)
        self.shoppers.append(shopper)
        shopper.order()
        return shopper

    def attempt(self, shopper: Shopper, channel: str, client: str = "pc") -> str:
        answer = shopper.pay(channel, client)
        assert answer.status_code in (200, 201), answer.text
        body = answer.json()
        open_action(body["action"])
        return str(body["out_trade_no"])

    def pay(self, channel: str, out_trade_no: str) -> None:
        answer = self.sandbox.pay(channel, out_trade_no)
        assert answer.status_code == 200, answer.text

    def paid_order(self, channel: str) -> tuple[Shopper, str]:
        """An order paid with its callback delivered (the order is paid here)."""
        shopper = self.shopper()
        out_trade_no = self.attempt(shopper, channel)
        self.pay(channel, out_trade_no)
        wait_for(lambda: shopper.view()["status"] == "paid")
        return shopper, out_trade_no

    def refund(self, shopper: Shopper, amount: int) -> Refund:
        """A staff refund, sent to the gateway now (what the worker would do)."""
        order = Order.objects.get(public_id=shopper.order_id)
        refund = refund_request(order_id=order.pk, amount=amount, reason=RefundReason.OPS)
        refund_execute(refund_id=refund.pk)
        return refund

    def attempt_row(self, out_trade_no: str) -> PaymentAttempt:
        return PaymentAttempt.objects.get(out_trade_no=out_trade_no)


@pytest.fixture
def shop(gateways_at_sandbox: Any, live_server: Any) -> Shop:
    return Shop(live_server.url, gateways_at_sandbox)
