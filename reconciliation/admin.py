"""Reconciliation for ops: start a run (done by the worker), watch it, read and acknowledge
its findings, export them. Every action declares its permission and is written to the admin log.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from payments.gateways.registry import CHANNELS
from reconciliation.models import Finding, StatementRun
from reconciliation.services import china_today, finding_acknowledge, run_request
from shop.admin_display import (
    local_time,
    money_column,
    read_only_fields,
    short_id,
    time_column,
)


def _queue_run(run: StatementRun) -> None:
    from reconciliation.tasks import reconcile_run

    reconcile_run.delay_on_commit(run.channel, run.statement_date.isoformat())


class StartRunForm(forms.Form):
    channel = forms.ChoiceField(choices=[(c, c) for c in CHANNELS])
    statement_date = forms.DateField(
        help_text="The day to reconcile (China time). Gateways publish it the next morning.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def clean_statement_date(self) -> dt.date:
        day: dt.date = self.cleaned_data["statement_date"]
        if day > china_today():
            raise forms.ValidationError("No statement exists for a future day.")
        return day


class FindingInline(admin.TabularInline):
    """A run's findings, read-only: they are acknowledged from the findings list."""

    model = Finding
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("kind", "state", "out_trade_no", "out_refund_no", "gateway_money", "local_money")
    readonly_fields = fields

    gateway_money = money_column("gateway_amount", _("gateway"))
    local_money = money_column("local_amount", _("ours"))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StatementRun)
class StatementRunAdmin(admin.ModelAdmin):
    list_display = (
        "statement_date",
        "channel",
        "status",
        "progress",
        "payment_lines",
        "refund_lines",
        "healed",
        "open_findings",
        "findings_per_kind",
        "finished",
    )
    list_filter = ("channel", "status", "statement_date")
    readonly_fields = [f.name for f in StatementRun._meta.fields]
    inlines = [FindingInline]
    actions = ["rerun"]
    change_list_template = "admin/reconciliation/statementrun/change_list.html"
    change_form_template = "admin/reconciliation/statementrun/change_form.html"

    finished = time_column("finished_at", _("finished"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_start_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("reconciliation.start_statementrun")

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra = {**(extra_context or {}), "can_start": self.has_start_permission(request)}
        return super().changelist_view(request, extra)

    def get_queryset(self, request: HttpRequest) -> QuerySet[StatementRun]:
        # Findings per kind in the same query as the runs: one conditional count per kind.
        counts = {
            f"n_{kind}": Count("findings", filter=Q(findings__kind=kind)) for kind in Finding.Kind
        }
        return super().get_queryset(request).annotate(**counts)

    @admin.display(description="progress")
    def progress(self, obj: StatementRun) -> str:
        if obj.status == StatementRun.Status.RUNNING:
            return f"{obj.get_phase_display()}: {obj.lines_read:,} lines"
        return obj.get_phase_display() if obj.phase else "—"

    @admin.display(description="findings per kind")
    def findings_per_kind(self, obj: StatementRun) -> str:
        counts = [(kind.label, getattr(obj, f"n_{kind}", 0)) for kind in Finding.Kind]
        counts = [(label, n) for label, n in counts if n]
        if not counts:
            return "none"
        return format_html_join(", ", "{}: {}", counts)

    def get_urls(self) -> list[URLPattern]:
        start = path(
            "start/",
            self.admin_site.admin_view(self.start_view),
            name="reconciliation_statementrun_start",
        )
        return [start, *super().get_urls()]

    def start_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_start_permission(request):
            self.message_user(request, "You may not start reconciliation runs.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:reconciliation_statementrun_changelist"))
        initial = {"statement_date": china_today() - dt.timedelta(days=1)}
        form = StartRunForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            run = run_request(
                channel=form.cleaned_data["channel"],
                day=form.cleaned_data["statement_date"],
                user_id=int(request.user.pk or 0) or None,
            )
            _queue_run(run)
            self.log_change(request, run, "Started a reconciliation run")
            self.message_user(request, f"Reconciliation of {run} queued; the worker runs it.")
            return HttpResponseRedirect(
                reverse("admin:reconciliation_statementrun_change", args=[run.pk])
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Start a reconciliation run",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/reconciliation/start_run.html", context)

    @admin.action(description="Run reconciliation again (by the worker)", permissions=["start"])
    def rerun(self, request: HttpRequest, queryset: QuerySet[StatementRun]) -> None:
        for run in queryset:
            run = run_request(
                channel=run.channel,
                day=run.statement_date,
                user_id=int(request.user.pk or 0) or None,
            )
            _queue_run(run)
            self.log_change(request, run, "Queued a re-run")
        self.message_user(request, f"{queryset.count()} run(s) queued.")


class AcknowledgeForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text="What you found and did (kept with your name and the time).",
    )


CSV_COLUMNS = (
    "id", "statement_date", "channel", "kind", "state", "out_trade_no", "out_refund_no",
    "gateway_amount", "local_amount", "currency", "detail", "note", "resolved_by", "resolved_at",
    "created_at",
)  # fmt: skip


class _Echo:
    def write(self, value: str) -> str:
        return value


def findings_csv_rows(queryset: QuerySet[Finding]) -> Iterator[str]:
    """CSV lines of ``queryset``, read in chunks (a day can have many findings)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for f in queryset.select_related("run", "resolved_by").iterator(chunk_size=1000):
        yield writer.writerow(
            [
                f.pk, f.run.statement_date.isoformat(), f.run.channel, f.kind, f.state,
                f.out_trade_no, f.out_refund_no,
                "" if f.gateway_amount is None else f.gateway_amount,
                "" if f.local_amount is None else f.local_amount, f.currency, f.detail,
                f.note, f.resolved_by.get_username() if f.resolved_by else "",
                f.resolved_at.isoformat() if f.resolved_at else "", f.created_at.isoformat(),
            ]
        )  # fmt: skip


@admin.register(Finding)
class FindingAdmin(admin.ModelAdmin):
    # Fits a 1440 px screen: the statement's channel and day share a column, so do the trade
    # and refund numbers (shortened, whole on hover; the trade number links to its attempt).
    list_display = (
        "created",
        "statement",
        "kind",
        "state",
        "trade",
        "gateway_money",
        "local_money",
        "acknowledged",
    )
    list_filter = (
        "kind",
        "state",
        ("run__statement_date", admin.DateFieldListFilter),
        "run__channel",
    )
    date_hierarchy = "run__statement_date"
    search_fields = ("out_trade_no", "out_refund_no", "detail", "note")
    fields = readonly_fields = read_only_fields(
        Finding, gateway_amount="gateway_money", local_amount="local_money"
    )
    list_select_related = ("run", "attempt", "resolved_by")

    created = time_column("created_at", _("found"))
    gateway_money = money_column("gateway_amount", _("gateway"))
    local_money = money_column("local_amount", _("ours"))
    actions = ["acknowledge", "export_csv"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("reconciliation.acknowledge_finding")

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("reconciliation.export_finding")

    @admin.display(description=_("statement"), ordering="run__statement_date")
    def statement(self, obj: Finding) -> str:
        """Which gateway's statement of which day, e.g. "alipay 2026-01-02"."""
        return f"{obj.run.channel} {obj.run.statement_date:%Y-%m-%d}"

    @admin.display(description=_("trade / refund"), ordering="out_trade_no")
    def trade(self, obj: Finding) -> str:
        """The trade no (linked to its attempt when there is one) and the refund no if any."""
        trade = short_id(obj.out_trade_no)
        if obj.attempt_id is not None:
            url = reverse("admin:payments_paymentattempt_change", args=[obj.attempt_id])
            trade = format_html('<a href="{}">{}</a>', url, trade)
        if not obj.out_refund_no:
            return trade
        return format_html("{}<br>{}", trade, short_id(obj.out_refund_no))

    @admin.display(description=_("resolved"), ordering="resolved_at")
    def acknowledged(self, obj: Finding) -> str:
        if obj.resolved_at is None:
            return "—"
        who = obj.resolved_by.get_username() if obj.resolved_by else "?"
        return f"{who}, {local_time(obj.resolved_at)}"

    @admin.action(description="Acknowledge with a note", permissions=["acknowledge"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Finding]) -> HttpResponse | None:
        form = AcknowledgeForm(request.POST if "note" in request.POST else None)
        if form.is_bound and form.is_valid():
            done = 0
            for finding in queryset:
                if finding_acknowledge(
                    finding_id=finding.pk,
                    user_id=int(request.user.pk or 0),
                    note=form.cleaned_data["note"],
                ):
                    done += 1
                    self.log_change(
                        request, finding, f"Acknowledged: {form.cleaned_data['note'][:150]}"
                    )
            skipped = queryset.count() - done
            self.message_user(
                request,
                f"{done} finding(s) acknowledged"
                + (f"; {skipped} were not open and stay as they were." if skipped else "."),
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Acknowledge findings",
            "form": form,
            "findings": queryset,
            "opts": self.model._meta,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/reconciliation/acknowledge.html", context)

    @admin.action(description="Export as CSV", permissions=["export"])
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet[Finding]
    ) -> StreamingHttpResponse:
        response = StreamingHttpResponse(
            findings_csv_rows(queryset.order_by("run__statement_date", "id")),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = 'attachment; filename="findings.csv"'
        count = queryset.count()
        LogEntry.objects.create(
            user_id=int(request.user.pk or 0),
            content_type=ContentType.objects.get_for_model(Finding),
            object_id=None,
            object_repr=f"{count} findings",
            action_flag=CHANGE,
            change_message=f"Exported {count} findings as CSV",
        )
        return response
