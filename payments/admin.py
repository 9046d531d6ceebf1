from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from orders.locks import order_lock
from payments.gateways.base import CloseOutcome
from payments.models import GatewayEvent, PaymentAttempt
from payments.services import attempt_close_at_gateway, attempt_query_and_apply
from refunds.permissions import CLOSE_AT_GATEWAY, QUERY_GATEWAY
from shop.errors import ApplicationError


class GatewayEventInline(admin.TabularInline):
    model = GatewayEvent
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("created_at", "kind", "outcome", "verified", "rejection", "deliveries")
    readonly_fields = fields


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(admin.ModelAdmin):
    list_display = (
        "out_trade_no",
        "order",
        "channel",
        "client",
        "status",
        "amount",
        "next_poll_at",
        "poll_step",
        "created_at",
    )
    list_filter = ("status", "channel", "client", "created_at")
    search_fields = ("out_trade_no", "public_id", "gateway_trade_no", "order__public_id")
    readonly_fields = [f.name for f in PaymentAttempt._meta.fields]
    inlines = [GatewayEventInline]
    actions = ["query_gateway_now", "close_at_gateway"]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_query_gateway_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(QUERY_GATEWAY)

    def has_close_at_gateway_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CLOSE_AT_GATEWAY)

    @admin.action(description="Query gateway now", permissions=["query_gateway"])
    def query_gateway_now(self, request: HttpRequest, queryset: QuerySet[PaymentAttempt]) -> None:
        for attempt in queryset:
            try:
                with order_lock(attempt.order_id):
                    status, decision = attempt_query_and_apply(attempt=attempt, source="admin")
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
                    outcome = attempt_close_at_gateway(attempt=attempt, source="admin")
            except ApplicationError as error:
                self.message_user(request, f"{attempt}: {error.detail}", messages.WARNING)
                continue
            self.log_change(request, attempt, f"Closed at gateway: {outcome}")
            level = messages.WARNING if outcome is CloseOutcome.UNKNOWN else messages.INFO
            self.message_user(request, f"{attempt}: close {outcome}.", level)


@admin.register(GatewayEvent)
class GatewayEventAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "channel",
        "kind",
        "out_trade_no",
        "outcome",
        "verified",
        "rejection",
        "deliveries",
        "processed_at",
    )
    list_filter = ("channel", "kind", "verified", "outcome", "created_at")
    search_fields = ("out_trade_no", "event_id")
    readonly_fields = [f.name for f in GatewayEvent._meta.fields if f.name != "body"] + ["raw_body"]
    exclude = ("body",)

    @admin.display(description="Raw body")
    def raw_body(self, obj: GatewayEvent) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", obj.body)

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
