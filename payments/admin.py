from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from orders.locks import order_lock
from payments.gateways.base import CloseOutcome
from payments.models import AttentionReason, GatewayEvent, PaymentAttempt, StateChange
from payments.services import attempt_close_at_gateway, attempt_query_and_apply
from refunds.permissions import CLOSE_AT_GATEWAY, QUERY_GATEWAY
from shop.admin_display import (
    money_column,
    read_only_fields,
    short_id,
    short_id_column,
    staff_cause,
    time_column,
)
from shop.errors import ApplicationError

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

# A word or two per reason, so the list's reason column stays narrow.
REASON_WORDS: dict[str, StrOrPromise] = {
    AttentionReason.GATEWAY_SILENT: _("gateway silent"),
    AttentionReason.AMOUNT_MISMATCH: _("amount mismatch"),
    AttentionReason.CONTRADICTION: _("contradiction"),
}


class ReadOnlyInline(admin.TabularInline):
    """An inline of audit data: shown, never added, changed or deleted here (so the page
    offers no "Add another" link and no delete boxes)."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class GatewayEventInline(ReadOnlyInline):
    model = GatewayEvent
    show_change_link = True
    fields = ("when", "kind", "outcome", "verified", "rejection", "deliveries")
    readonly_fields = fields

    when = time_column("created_at", _("time"), seconds=True)


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(admin.ModelAdmin):
    # Fits a 1440 px screen: the ids are shortened (whole on hover), currency is in the amount.
    list_display = (
        "trade_no",
        "order_public_id",
        "channel",
        "status",
        "reason",
        "attempt_amount",
        "created",
    )
    list_filter = ("status", "attention_reason", "channel", "client", "created_at")
    search_fields = ("out_trade_no", "public_id", "gateway_trade_no", "order__public_id")
    list_select_related = ("order",)
    fields = readonly_fields = read_only_fields(
        PaymentAttempt, amount="attempt_amount", captured_amount="captured"
    )
    inlines = [GatewayEventInline]
    actions = ["query_gateway_now", "close_at_gateway"]

    trade_no = short_id_column("out_trade_no", _("trade no"))
    attempt_amount = money_column("amount", _("amount"))
    captured = money_column("captured_amount", _("captured"))
    created = time_column("created_at", _("created"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_query_gateway_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(QUERY_GATEWAY)

    def has_close_at_gateway_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CLOSE_AT_GATEWAY)

    @admin.display(description=_("order"), ordering="order__public_id")
    def order_public_id(self, attempt: PaymentAttempt) -> str:
        return short_id(attempt.order.public_id)

    @admin.display(description=_("reason"), ordering="attention_reason")
    def reason(self, attempt: PaymentAttempt) -> str:
        """A word or two in the column (it must fit), the whole reason on hover."""
        if not attempt.attention_reason:
            return "—"
        full = attempt.get_attention_reason_display()
        return format_html(
            '<span title="{}">{}</span>', full, REASON_WORDS.get(attempt.attention_reason, full)
        )

    @admin.action(description="Query gateway now", permissions=["query_gateway"])
    def query_gateway_now(self, request: HttpRequest, queryset: QuerySet[PaymentAttempt]) -> None:
        for attempt in queryset:
            try:
                with order_lock(attempt.order_id):
                    status, decision = attempt_query_and_apply(
                        attempt=attempt, source=staff_cause(request)
                    )
            except ApplicationError as error:
                self.message_user(request, f"{attempt}: {error.detail}", messages.WARNING)
                continue
            self.log_change(request, attempt, f"Queried gateway: {status.outcome}, {decision}")
            self.message_user(request, f"{attempt}: gateway says {status.outcome}; {decision}.")

    @admin.action(description="Close at gateway", permissions=["close_at_gateway"])
    def close_at_gateway(self, request: HttpRequest, queryset: QuerySet[PaymentAttempt]) -> None:
        for attempt in queryset:
            try:
                with order_lock(attempt.order_id):
                    outcome = attempt_close_at_gateway(attempt=attempt, source=staff_cause(request))
            except ApplicationError as error:
                self.message_user(request, f"{attempt}: {error.detail}", messages.WARNING)
                continue
            self.log_change(request, attempt, f"Closed at gateway: {outcome}")
            level = messages.WARNING if outcome is CloseOutcome.UNKNOWN else messages.INFO
            self.message_user(request, f"{attempt}: close {outcome}.", level)


@admin.register(GatewayEvent)
class GatewayEventAdmin(admin.ModelAdmin):
    list_display = (
        "when",
        "channel",
        "kind",
        "trade_no",
        "outcome",
        "verified",
        "rejection",
        "deliveries",
        "processed",
    )
    list_filter = ("channel", "kind", "verified", "outcome", "created_at")
    search_fields = ("out_trade_no", "event_id")
    readonly_fields = [f.name for f in GatewayEvent._meta.fields if f.name != "body"] + ["raw_body"]
    exclude = ("body",)

    when = time_column("created_at", _("time"), seconds=True)
    trade_no = short_id_column("out_trade_no", _("trade no"))
    processed = time_column("processed_at", _("processed"), seconds=True)

    @admin.display(description="Raw body")
    def raw_body(self, obj: GatewayEvent) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", obj.body)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class StateChangeColumns:
    """The columns a state change is shown with, in its list and on its order's page."""

    when = time_column("created_at", _("time"), seconds=True)

    @admin.display(description=_("object"))
    def subject(self, change: StateChange) -> str:
        """The attempt's trade no, the refund's number or the order's id, linked to it."""
        if change.entity == StateChange.Entity.ATTEMPT and change.attempt is not None:
            name, pk, label = (
                "payments_paymentattempt",
                change.attempt.pk,
                change.attempt.out_trade_no,
            )
        elif change.entity == StateChange.Entity.REFUND and change.refund is not None:
            name, pk, label = "refunds_refund", change.refund.pk, change.refund.out_refund_no
        else:
            name, pk, label = "orders_order", change.order.pk, change.order.public_id
        return format_html(
            '<a href="{}" title="{}">{}</a>',
            reverse(f"admin:{name}_change", args=[pk]),
            label,
            label,
        )

    @admin.display(description=_("from → to"), ordering="to_status")
    def move(self, change: StateChange) -> str:
        return f"{change.from_status} → {change.to_status}"


@admin.register(StateChange)
class StateChangeAdmin(StateChangeColumns, admin.ModelAdmin):
    """The append-only audit trail of every transition: view only."""

    list_display = ("when", "entity", "subject", "move", "transition", "cause")
    list_filter = ("entity", "to_status", "transition", "created_at")
    # Ids are matched whole (a pasted id); causes by any part ("admin:", a user name).
    search_fields = (
        "=order__public_id",
        "=attempt__out_trade_no",
        "=refund__out_refund_no",
        "cause",
    )
    search_help_text = _("An order id, trade no or refund no (whole), or part of a cause.")
    list_select_related = ("order", "attempt", "refund")
    readonly_fields = [f.name for f in StateChange._meta.fields]
    # The trail only grows: no count of the whole table on every filtered page.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StateChangeFormSet(BaseInlineFormSet):
    @classmethod
    def get_default_prefix(cls) -> str:
        # The foreign key has no reverse name ("+"), which would leave the formset unnamed.
        return "state_changes"


class StateChangeInline(StateChangeColumns, ReadOnlyInline):
    """An order's state changes (its own, its attempts' and its refunds'), oldest first."""

    model = StateChange
    formset = StateChangeFormSet
    fk_name = "order"
    verbose_name = _("state change")
    verbose_name_plural = _("State changes")
    fields = ("when", "entity", "subject", "move", "transition", "cause", "detail")
    readonly_fields = fields
    ordering = ("created_at", "id")

    def get_queryset(self, request: HttpRequest) -> QuerySet[StateChange]:
        return super().get_queryset(request).select_related("order", "attempt", "refund")
