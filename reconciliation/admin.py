from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from reconciliation.models import Finding, StatementRun
from reconciliation.services import finding_resolve, reconcile_day


class FindingInline(admin.TabularInline):
    model = Finding
    extra = 0
    can_delete = False
    fields = ("kind", "state", "out_trade_no", "out_refund_no", "gateway_amount", "local_amount")
    readonly_fields = fields


@admin.register(StatementRun)
class StatementRunAdmin(admin.ModelAdmin):
    list_display = (
        "statement_date",
        "channel",
        "status",
        "payment_lines",
        "refund_lines",
        "healed",
        "open_findings",
        "finished_at",
    )
    list_filter = ("channel", "status", "statement_date")
    readonly_fields = [f.name for f in StatementRun._meta.fields]
    inlines = [FindingInline]
    actions = ["rerun"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    @admin.action(description="Run reconciliation again")
    def rerun(self, request: HttpRequest, queryset: QuerySet[StatementRun]) -> None:
        for run in queryset:
            fresh = reconcile_day(channel=run.channel, day=run.statement_date)
            self.log_change(request, run, f"Re-run: {fresh.status}, {fresh.open_findings} open")


@admin.register(Finding)
class FindingAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "kind",
        "state",
        "out_trade_no",
        "out_refund_no",
        "gateway_amount",
        "local_amount",
        "run",
    )
    list_filter = ("state", "kind", "run__channel")
    search_fields = ("out_trade_no", "out_refund_no")
    readonly_fields = [f.name for f in Finding._meta.fields]
    actions = ["resolve"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    @admin.action(description="Mark resolved")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Finding]) -> None:
        for finding in queryset:
            finding_resolve(finding_id=finding.pk, user_id=int(request.user.pk or 0))
            self.log_change(request, finding, "Marked resolved")
