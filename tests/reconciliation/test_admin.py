"""Reconciliation as ops use it in the admin, with only the permissions their role has: start a
run (the real worker does it), watch it, read findings as money, filter, acknowledge with a
note, export CSV; every action is in the admin log."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client

from reconciliation.models import Finding, StatementRun
from reconciliation.services import china_today
from tests.reconciliation.conftest import Shop
from tests.support.shopper import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

RUNS = "/admin/reconciliation/statementrun/"
FINDINGS = "/admin/reconciliation/finding/"


def staff(username: str, *codenames: str) -> Client:
    user = User.objects.create_user(username, password="pw-Ops-12345", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="reconciliation", codename__in=codenames)
    )
    client = Client()
    assert client.login(username=username, password="pw-Ops-12345")
    return client


@pytest.fixture
def findings_of_today(stack, live_server, sandbox) -> Finding:
    """A run, started from the admin and done by the worker, with one open finding."""
    shop = Shop(live_server.url, sandbox)
    sandbox.set_faults(bill_amount_mismatch=1)
    shop.paid_order("alipay")
    sandbox.set_faults(bill_amount_mismatch=0)
    ops = staff("starter", "view_statementrun", "start_statementrun")
    page = ops.get(RUNS)
    assert page.status_code == 200 and b"Start a run" in page.content
    today = china_today().isoformat()
    answer = ops.post(f"{RUNS}start/", {"channel": "alipay", "statement_date": today})
    assert answer.status_code == 302
    run = StatementRun.objects.get(channel="alipay")
    wait_for(lambda: StatementRun.objects.get(pk=run.pk).status == "done", timeout=30)
    assert LogEntry.objects.filter(object_id=str(run.pk), user__username="starter").exists()
    listing = ops.get(RUNS).content.decode()
    assert "Amounts differ: 1" in listing
    detail = ops.get(f"{RUNS}{run.pk}/change/").content.decode()
    assert "Finished" in detail
    return Finding.objects.get(run=run)


def test_ops_start_a_run_and_read_its_findings_as_money(findings_of_today: Finding) -> None:
    reader = staff("reader", "view_finding")
    page = reader.get(FINDINGS, {"kind": "amount_mismatch", "state": "open"}).content.decode()
    assert findings_of_today.out_trade_no in page
    assert "¥59.01" in page and "¥59.00" in page
    today = china_today()
    assert (
        findings_of_today.out_trade_no
        in reader.get(FINDINGS, {"run__statement_date__gte": today.isoformat()}).content.decode()
    )
    assert (
        findings_of_today.out_trade_no
        not in reader.get(FINDINGS, {"state": "healed"}).content.decode()
    )
    # No permission, no action: neither offered nor carried out.
    assert 'value="acknowledge"' not in page and 'value="export_csv"' not in page
    reader.post(
        FINDINGS,
        {"action": "acknowledge", "_selected_action": [findings_of_today.pk], "note": "x"},
    )
    assert Finding.objects.get(pk=findings_of_today.pk).state == "open"


def test_ops_acknowledge_with_a_note_and_export_csv(findings_of_today: Finding) -> None:
    ops = staff("acker", "view_finding", "acknowledge_finding", "export_finding")
    selected = {"_selected_action": [findings_of_today.pk]}
    form = ops.post(FINDINGS, {"action": "acknowledge", **selected})
    assert form.status_code == 200 and b"Acknowledge" in form.content
    done = ops.post(
        FINDINGS,
        {"action": "acknowledge", **selected, "note": "Alipay corrected its bill; no loss."},
    )
    assert done.status_code == 302
    finding = Finding.objects.get(pk=findings_of_today.pk)
    assert finding.state == "resolved" and finding.note.startswith("Alipay corrected")
    assert finding.resolved_by is not None and finding.resolved_by.username == "acker"
    assert finding.resolved_at is not None
    assert LogEntry.objects.filter(
        object_id=str(finding.pk), user__username="acker", change_message__contains="Alipay"
    ).exists()

    exported = ops.post(FINDINGS, {"action": "export_csv", **selected})
    assert exported.status_code == 200 and exported["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert [(r["kind"], r["state"], r["gateway_amount"], r["resolved_by"]) for r in rows] == [
        ("amount_mismatch", "resolved", "5901", "acker")
    ]
    assert LogEntry.objects.filter(user__username="acker", change_message__contains="CSV").exists()


def test_a_run_cannot_be_started_without_the_permission(stack) -> None:
    viewer = staff("viewer", "view_statementrun")
    assert b"Start a run" not in viewer.get(RUNS).content
    viewer.post(f"{RUNS}start/", {"channel": "wechat", "statement_date": "2026-01-01"})
    assert not StatementRun.objects.exists()
