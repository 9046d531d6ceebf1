from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from orders.models import IdempotencyKey, Order, OrderLine
from payments.models import PaymentAttempt
from refunds.models import Refund, RefundReason
from refunds.permissions import REQUEST_REFUND
from refunds.services import refund_request, refundable_amount
from shop.errors import ApplicationError


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

    def get_readonly_fields(self, request, obj=None):  # type: ignore[no-untyped-def]
        return (*self.readonly_fields, "refund_link", "gateway_events")

    @admin.display(description="Gateway events")
    def gateway_events(self, obj: Order) -> str:
        """Every callback and query result of the order's attempts, newest first."""
        from django.utils.html import format_html_join

        from payments.models import GatewayEvent

        events = GatewayEvent.objects.filter(attempt__order=obj).order_by("-created_at")[:50]
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:payments_gatewayevent_change", args=[e.pk]),
                    e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    e.out_trade_no,
                    e.kind,
                    e.outcome,
                    "verified" if e.verified else f"rejected: {e.rejection}",
                )
                for e in events
            ),
        )
        return format_html(
            "<table><tr><th>when</th><th>trade</th><th>kind</th><th>outcome</th><th>check</th>"
            "</tr>{}</table>",
            rows,
        )

    @admin.display(description="Refund")
    def refund_link(self, obj: Order) -> str:
        if not obj.is_paid:
            return "—"
        url = reverse("admin:orders_order_refund", args=[obj.pk])
        return format_html('<a class="button" href="{}">Refund this order…</a>', url)

    def get_urls(self) -> list[URLPattern]:
        custom = [
            path(
                "<int:pk>/refund/",
                self.admin_site.admin_view(self.refund_view),
                name="orders_order_refund",
            )
        ]
        return custom + super().get_urls()

    def refund_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Refund an order fully or partly; above the threshold a second staff member approves."""
        order = get_object_or_404(Order, pk=pk)
        if not request.user.has_perm(REQUEST_REFUND):
            messages.error(request, "You do not have permission to refund orders.")
            return redirect("admin:index")
        left = refundable_amount(order.paid_attempt_id) if order.paid_attempt_id else 0
        form = RefundForm(request.POST or None, initial={"amount": left})
        if request.method == "POST" and form.is_valid():
            try:
                refund = refund_request(
                    order_id=order.pk,
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    note=form.cleaned_data["note"],
                    requested_by=request.user,  # type: ignore[arg-type]
                )
            except ApplicationError as error:
                messages.error(request, error.detail)
            else:
                self.log_change(
                    request, order, f"Refund {refund.out_refund_no} of {refund.amount} requested"
                )
                if refund.approval_required:
                    messages.warning(
                        request, "Refund recorded; a second staff member must approve it."
                    )
                else:
                    messages.success(request, "Refund sent to the gateway.")
                return redirect("admin:orders_order_change", order.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Refund order {order.public_id}",
            "order": order,
            "form": form,
            "refundable": left,
            "opts": self.model._meta,
        }
        return render(request, "admin/orders/order/refund.html", context)


class RefundForm(forms.Form):
    amount = forms.IntegerField(min_value=1, help_text="Minor units (fen, cents).")
    reason = forms.ChoiceField(
        choices=[
            (RefundReason.CUSTOMER_REQUEST, "Customer request"),
            (RefundReason.OPS, "Ops"),
        ]
    )
    note = forms.CharField(widget=forms.Textarea, required=False, max_length=1000)


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ("key", "order", "created_at")
    search_fields = ("key", "order__public_id")
    readonly_fields = ("key", "request_digest", "order", "created_at")
