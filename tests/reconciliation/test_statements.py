"""The sandbox's statements, as the adapters download and read them: one channel's trades per
statement, in the real formats, streamed from disk in bounded memory; a statement not published
yet is retried; the beat waits for the gateways' publication hour."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from celery.exceptions import Retry
from django.core.management import CommandError, call_command

from payments.gateways.alipay import read_bill_zip
from payments.gateways.registry import get_gateway
from payments.gateways.wechatpay import read_trade_bill
from reconciliation.benchgen import BenchDay, write_statement
from reconciliation.models import StatementRun
from reconciliation.services import china_today, reconcile_day
from reconciliation.tasks import reconcile_run, reconcile_yesterday
from shop.schedules import beat_schedule
from tests.reconciliation.conftest import Shop
from tests.support.shopper import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_statement_holds_its_own_channels_trades_in_the_real_format(shop: Shop) -> None:
    paid = {}
    for channel in ("alipay", "wechat"):
        shopper, otn = shop.paid_order(channel)
        refund = shop.refund(shopper, 700)
        paid[channel] = (otn, refund.out_refund_no)
        wait_for(lambda refund=refund: type(refund).objects.get(pk=refund.pk).status == "succeeded")

    for channel, (otn, out_refund_no) in paid.items():
        with get_gateway(channel).open_statement(china_today()) as statement:
            lines = list(statement.lines())
            raw = Path(statement.path).read_bytes()
        assert {
            (line.kind, line.out_trade_no, line.out_refund_no, line.amount) for line in lines
        } == {
            ("payment", otn, "", 5900),
            ("refund", otn, out_refund_no, 700),
        }
        if channel == "alipay":
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                names = archive.namelist()
                detail = archive.read(next(n for n in names if "汇总" not in n)).decode("gbk")
            assert len(names) == 2 and detail.startswith("#支付宝业务明细查询")
            assert "支付宝交易号,商户订单号,业务类型" in detail and "退款" in detail
        else:
            text = gzip.decompress(raw).decode("utf-8")
            assert text.startswith("交易时间,公众账号ID,商户号")
            assert f"`{otn}," in text and "总交易单数" in text


@pytest.mark.parametrize("channel", ["alipay", "wechat"])
def test_statement_readers_stream_in_bounded_memory(tmp_path: Path, channel: str) -> None:
    """Reading 5,000 or 50,000 lines costs the same few hundred KiB of Python memory."""
    reader = read_bill_zip if channel == "alipay" else read_trade_bill
    peaks = []
    for lines in (5_000, 50_000):
        day = BenchDay(channel=channel, day=dt.date(2026, 1, 5), lines=lines)
        folder = tmp_path / str(lines)
        folder.mkdir()
        path = write_statement(day, folder)
        tracemalloc.start()
        count = sum(1 for _ in reader(path))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert count == lines - day.anomalies  # those are in our books only
    assert peaks[1] < 2 * 1024 * 1024, peaks
    assert peaks[1] < peaks[0] * 1.5 + 256 * 1024, peaks


@pytest.mark.parametrize("channel", ["alipay", "wechat"])
def test_a_statement_not_published_yet_is_retried(shop: Shop, channel: str) -> None:
    shop.sandbox.set_faults(bill_not_ready=1)
    day = china_today().isoformat()
    with pytest.raises(Retry):
        reconcile_run.run(channel, day)
    run = StatementRun.objects.get(channel=channel)
    assert run.status == "not_ready" and "exist" in run.error.lower()
    shop.sandbox.set_faults(bill_not_ready=0)
    assert reconcile_run.run(channel, day) == "done"


def test_the_daily_run_waits_for_the_gateways_hour(settings) -> None:
    settings.RECONCILE_HOUR = 11  # 11:00 China time is 03:00 UTC
    schedule = beat_schedule()["reconcile-yesterday"]["schedule"]
    assert schedule.hour == {3} and schedule.minute == {0}
    settings.RECONCILE_HOUR = 7  # 07:00 China time is 23:00 UTC the day before
    assert beat_schedule()["reconcile-yesterday"]["schedule"].hour == {23}


def test_the_daily_task_has_the_worker_reconcile_yesterday(stack) -> None:
    assert reconcile_yesterday() == {"alipay": "queued", "wechat": "queued"}
    yesterday = china_today() - dt.timedelta(days=1)
    wait_for(
        lambda: StatementRun.objects.filter(statement_date=yesterday, status="done").count() == 2,
        timeout=30,
    )
    assert reconcile_yesterday() == {"alipay": "done", "wechat": "done"}


def test_reconcile_command_reports_and_refuses_bad_dates(gateways_at_sandbox, capsys) -> None:
    call_command("reconcile", "--date", "today", "--channel", "alipay")
    assert "alipay" in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command("reconcile", "--date", "yesterday-ish")
    assert reconcile_day(channel="wechat", day=china_today()).status == "done"
