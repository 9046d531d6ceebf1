"""Reconciliation against the sandbox's real statements (Alipay: zipped GBK CSV; WeChat: backtick
text), healing what is safe through the same services and flagging the rest."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from orders.models import Order
from payments.models import PaymentAttempt
from reconciliation.models import Finding
from reconciliation.services import china_today, reconcile_day
from refunds.models import Refund
from tests.conftest import make_product
from tests.support.factories import make_attempt, make_order
from tests.support.shopper import Shopper, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _hold_polling() -> None:
    """Keep polling (and any background worker) away so only reconciliation can heal."""
    PaymentAttempt.objects.update(next_poll_at=timezone.now() + dt.timedelta(hours=1))


@pytest.mark.parametrize("channel", ["alipay", "wechat"])
def test_a_capture_we_never_heard_of_is_recorded_from_the_statement(
    gateways_at_sandbox, live_server, channel: str
) -> None:
    sandbox = gateways_at_sandbox
    sandbox.set_faults(notify_drop=1)
    make_product("TEA", price=1234, stock=10)
    shopper = Shopper(live_server.url)
    shopper.order()
    attempt = shopper.pay(channel, "pc").json()
    _hold_polling()
    assert sandbox.pay(channel, attempt["out_trade_no"]).status_code == 200
    assert shopper.view()["status"] == "unpaid"

    run = reconcile_day(channel=channel, day=china_today())
    assert run.status == "done" and run.payment_lines == 1 and run.healed == 1
    assert shopper.view()["status"] == "paid"
    finding = Finding.objects.get(run=run)
    assert (finding.kind, finding.state, finding.out_trade_no) == (
        "not_recorded",
        "healed",
        attempt["out_trade_no"],
    )

    again = reconcile_day(channel=channel, day=china_today())
    assert again.pk == run.pk and again.runs == 2 and again.healed == 0
    assert Finding.objects.filter(run=run).count() == 1


def test_books_that_disagree_become_open_findings(gateways_at_sandbox) -> None:
    order = make_order()
    attempt = make_attempt(order, channel="wechat", status="succeeded")
    PaymentAttempt.objects.filter(pk=attempt.pk).update(
        paid_at=timezone.now(), captured_amount=attempt.amount
    )
    run = reconcile_day(channel="wechat", day=china_today())
    finding = Finding.objects.get(run=run)
    assert (finding.kind, finding.state, finding.attempt_id) == (
        "missing_at_gateway",
        "open",
        attempt.pk,
    )
    assert run.open_findings == 1


def test_a_duplicate_capture_with_its_refund_is_reported_healed(
    gateways_at_sandbox, live_server
) -> None:
    sandbox = gateways_at_sandbox
    sandbox.set_faults(ignore_close=1)
    make_product("TEA", price=500, stock=10)
    shopper = Shopper(live_server.url)
    shopper.order()
    first = shopper.pay("wechat", "pc").json()
    second = shopper.pay("wechat", "app").json()
    sandbox.pay("wechat", second["out_trade_no"])
    wait_for(lambda: shopper.view()["status"] == "paid")
    sandbox.pay("wechat", first["out_trade_no"])
    wait_for(lambda: Refund.objects.filter(reason="duplicate_payment").exists())
    run = reconcile_day(channel="wechat", day=china_today())
    duplicate = Finding.objects.get(run=run, kind="duplicate_capture")
    assert duplicate.state == "healed" and duplicate.out_trade_no == first["out_trade_no"]
    assert Order.objects.get(public_id=shopper.order_id).status == "paid"


def test_reconcile_command_reports_and_refuses_bad_dates(gateways_at_sandbox, capsys) -> None:
    call_command("reconcile", "--date", "today", "--channel", "alipay")
    assert "alipay" in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command("reconcile", "--date", "yesterday-ish")
