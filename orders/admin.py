from django.contrib import admin

from orders.models import IdempotencyKey, Order, OrderLine
from payments.models import PaymentAttempt
from refunds.models import Refund


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False
    readonly_fields = ("sku", "name", "unit_price", "quantity", "line_total", "product")


class PaymentAttemptInline(admin.TabularInline):
    model = PaymentAttempt
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("out_trade_no", "channel", "client", "status", "amount", "paid_at", "created_at")
    readonly_fields = fields


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("out_refund_no", "amount", "reason", "status", "created_at")
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = (
        "public_id",
        "email",
        "status",
        "total_amount",
        "currency",
        "created_at",
        "expires_at",
        "paid_at",
    )
    list_filter = ("status", "close_reason", "created_at", "paid_at")
    search_fields = ("public_id", "email")
    date_hierarchy = "created_at"
    readonly_fields = (
        "public_id",
        "email",
        "status",
        "total_amount",
        "currency",
        "owner_key",
        "checkout_token",
        "expires_at",
        "paid_at",
        "paid_attempt",
        "closed_at",
        "close_reason",
        "created_at",
        "updated_at",
    )
    inlines = [OrderLineInline, PaymentAttemptInline, RefundInline]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ("key", "order", "created_at")
    search_fields = ("key", "order__public_id")
    readonly_fields = ("key", "request_digest", "order", "created_at")
