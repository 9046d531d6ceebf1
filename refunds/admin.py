from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from refunds.models import Refund
from refunds.permissions import APPROVE_REFUND, RETRY_REFUND
from refunds.services import refund_approve, refund_retry
from shop.errors import ApplicationError


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    list_display = (
        "out_refund_no",
        "order",
        "attempt",
        "amount",
        "currency",
        "reason",
        "status",
        "approval_required",
        "approved_at",
        "created_at",
    )
    list_filter = ("status", "reason", "approval_required", "created_at")
    search_fields = ("out_refund_no", "public_id", "order__public_id", "attempt__out_trade_no")
    readonly_fields = [f.name for f in Refund._meta.fields]
    actions = ["retry_failed", "approve"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RETRY_REFUND)

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(APPROVE_REFUND)

    @admin.action(description="Retry failed refunds", permissions=["retry"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        for refund in queryset:
            try:
                refund_retry(refund_id=refund.pk)
            except ApplicationError as error:
                self.message_user(request, f"{refund}: {error.detail}", messages.WARNING)
                continue
            self.log_change(request, refund, "Retried at the gateway")

    @admin.action(description="Approve (second staff member)", permissions=["approve"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        for refund in queryset:
            try:
                refund_approve(refund_id=refund.pk, approved_by=request.user)  # type: ignore[arg-type]
            except ApplicationError as error:
                self.message_user(request, f"{refund}: {error.detail}", messages.WARNING)
                continue
            self.log_change(request, refund, "Approved")
