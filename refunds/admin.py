from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from refunds.models import Refund, RefundStatus
from refunds.permissions import APPROVE_REFUND, RETRY_REFUND
from refunds.services import refund_approve, refund_retry
from shop.admin_display import (
    local_time,
    money_column,
    read_only_fields,
    short_id,
    short_id_column,
    staff_cause,
    time_column,
)
from shop.errors import ApplicationError

# Recorded above the approval threshold and not yet approved: nothing is sent until a second
# staff member approves it.
AWAITING_APPROVAL = Q(status=RefundStatus.PENDING, approval_required=True, approved_at__isnull=True)


class ApprovalFilter(admin.SimpleListFilter):
    title = _("approval")
    parameter_name = "approval"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("awaiting", _("Pending approval")),
            ("approved", _("Approved")),
            ("not_required", _("Not required")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() == "awaiting":
            return queryset.filter(AWAITING_APPROVAL)
        if self.value() == "approved":
            return queryset.filter(approval_required=True, approved_at__isnull=False)
        if self.value() == "not_required":
            return queryset.filter(approval_required=False)
        return queryset


@admin.register(Refund)
class RefundAdmin(admin.ModelAdmin):
    # Fits a 1440 px screen: the ids are shortened (whole on hover), currency is in the amount.
    list_display = (
        "refund_no",
        "order_public_id",
        "refund_amount",
        "reason",
        "status",
        "approval",
        "created",
    )
    list_filter = ("status", ApprovalFilter, "reason", "created_at")
    search_fields = ("out_refund_no", "public_id", "order__public_id", "attempt__out_trade_no")
    list_select_related = ("order", "approved_by")
    fields = readonly_fields = read_only_fields(Refund, amount="refund_amount")
    actions = ["retry_failed", "approve"]

    refund_no = short_id_column("out_refund_no", _("refund no"))
    refund_amount = money_column("amount", _("amount"))
    created = time_column("created_at", _("created"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RETRY_REFUND)

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(APPROVE_REFUND)

    @admin.display(description=_("order"), ordering="order__public_id")
    def order_public_id(self, refund: Refund) -> str:
        return short_id(refund.order.public_id)

    @admin.display(description=_("approval"), ordering="approved_at")
    def approval(self, refund: Refund) -> str:
        if not refund.approval_required:
            return "—"
        if refund.approved_at is None:
            return str(_("pending") if refund.status == RefundStatus.PENDING else _("not approved"))
        who = refund.approved_by.get_username() if refund.approved_by else "?"
        return f"{who}, {local_time(refund.approved_at)}"

    @admin.action(description="Retry failed refunds", permissions=["retry"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        for refund in queryset:
            try:
                refund_retry(refund_id=refund.pk, cause=staff_cause(request))
            except ApplicationError as error:
                self.message_user(request, f"{refund}: {error.detail}", messages.WARNING)
                continue
            self.log_change(request, refund, "Retried at the gateway")

    @admin.action(description="Approve (second staff member)", permissions=["approve"])
    def approve(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        for refund in queryset:
            try:
                # No cause to pass: approval is not a state transition (approved_by records who).
                refund_approve(refund_id=refund.pk, approved_by=request.user)  # type: ignore[arg-type]
            except ApplicationError as error:
                self.message_user(request, f"{refund}: {error.detail}", messages.WARNING)
                continue
            self.log_change(request, refund, "Approved")
