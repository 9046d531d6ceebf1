from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from orders.models import IdempotencyKey, Order, OrderLine
from payments.admin import ReadOnlyInline, StateChangeInline
from payments.models import AttemptStatus, GatewayEvent, PaymentAttempt
from refunds.models import Refund, RefundReason
from refunds.permissions import REQUEST_REFUND
from refunds.services import refund_request, refundable_amount
from shop.admin_display import (
    local_time,
    money,
    money_column,
    short_id,
    short_id_column,
    time_column,
)
from shop.errors import ApplicationError


def _order_currency(row: Any) -> str:
    return str(row.order.currency)


def attempt_needing_attention() -> Exists:
    """Whether the order (the outer row) has an attempt in needs_attention."""
    return Exists(
        PaymentAttempt.objects.filter(order=OuterRef("pk"), status=AttemptStatus.NEEDS_ATTENTION)
    )


class OrderLineInline(ReadOnlyInline):
    model = OrderLine
    fields = ("sku", "name", "price", "quantity", "total", "product")
    readonly_fields = fields

    price = money_column("unit_price", _("unit price"), currency=_order_currency)
    total = money_column("line_total", _("line total"), currency=_order_currency)

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrderLine]:
        return super().get_queryset(request).select_related("order", "product")


class PaymentAttemptInline(ReadOnlyInline):
    model = PaymentAttempt
    show_change_link = True
    fields = ("out_trade_no", "channel", "client", "status", "amount_shown", "paid", "created")
    readonly_fields = fields

    amount_shown = money_column("amount", _("amount"))
    paid = time_column("paid_at", _("paid"))
    created = time_column("created_at", _("created"))


class RefundInline(ReadOnlyInline):
    model = Refund
    show_change_link = True
    fields = ("out_refund_no", "amount_shown", "reason", "status", "created")
    readonly_fields = fields

    amount_shown = money_column("amount", _("amount"))
    created = time_column("created_at", _("created"))


class AttentionFilter(admin.SimpleListFilter):
    title = _("attempt needing attention")
    parameter_name = "attention"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() == "yes":
            return queryset.filter(attempt_needing_attention())
        if self.value() == "no":
            return queryset.filter(~attempt_needing_attention())
        return queryset


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    # Fits a 1440 px screen: the id is shortened (whole on hover), currency is in the total.
    list_display = (
        "order_public_id",
        "status",
        "total",
        "attention",
        "email",
        "created",
        "paid",
    )
    list_filter = ("status", AttentionFilter, "close_reason", "created_at", "paid_at")
    search_fields = ("public_id", "email")
    date_hierarchy = "created_at"
    fields = readonly_fields = (
        "public_id",
        "email",
        "status",
        "attention",
        "total",
        "currency",
        "owner_key",
        "checkout_token",
        "expires",
        "paid",
        "paid_attempt",
        "closed",
        "close_reason",
        "created",
        "updated",
        "refund_link",
        "gateway_events",
    )
    inlines = [OrderLineInline, PaymentAttemptInline, RefundInline, StateChangeInline]

    order_public_id = short_id_column("public_id", _("order"))
    total = money_column("total_amount", _("total"))
    created = time_column("created_at", _("created"))
    paid = time_column("paid_at", _("paid"))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Order]:
        return super().get_queryset(request).annotate(has_attention=attempt_needing_attention())

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=_("attention"), ordering="has_attention")
    def attention(self, order: Order) -> str:
        """A warning sign when one of the order's payment attempts needs a person (not the
        admin's yes/no icons: a green tick would read as "all is well")."""
        known = getattr(order, "has_attention", None)
        if known is None:
            known = order.attempts.filter(status=AttemptStatus.NEEDS_ATTENTION).exists()
        if not known:
            return "—"
        label = gettext("An attempt needs attention")
        return format_html(
            '<img src="{}" alt="{}" title="{}" class="needs-attention">',
            static("admin/img/icon-alert.svg"),
            label,
            label,
        )

    # Shown with their zone, like the lists (``created`` and ``paid`` are the list's columns).
    expires = time_column("expires_at", _("expires at"))
    closed = time_column("closed_at", _("closed at"))
    updated = time_column("updated_at", _("updated at"))

    @admin.display(description=_("Gateway events"))
    def gateway_events(self, obj: Order) -> str:
        """Every callback and query result of the order's attempts, newest first."""
        events = GatewayEvent.objects.filter(attempt__order=obj).order_by("-created_at")[:50]
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    reverse("admin:payments_gatewayevent_change", args=[e.pk]),
                    local_time(e.created_at, seconds=True),
                    short_id(e.out_trade_no),
                    e.kind,
                    e.outcome,
                    gettext("verified")
                    if e.verified
                    else gettext("rejected: %(why)s") % {"why": e.rejection},
                )
                for e in events
            ),
        )
        return format_html(
            "<table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>{}</table>",
            gettext("when"),
            gettext("trade"),
            gettext("kind"),
            gettext("outcome"),
            gettext("check"),
            rows,
        )

    @admin.display(description=_("Refund"))
    def refund_link(self, obj: Order) -> str:
        if not obj.is_paid:
            return "—"
        url = reverse("admin:orders_order_refund", args=[obj.pk])
        return format_html('<a class="button" href="{}">{}</a>', url, gettext("Refund this order…"))

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
            "total_shown": money(order.total_amount, order.currency),
            "refundable_shown": money(left, order.currency),
            "opts": self.model._meta,
        }
        return render(request, "admin/orders/order/refund.html", context)


class RefundForm(forms.Form):
    amount = forms.IntegerField(min_value=1, help_text=_("in fen (minor units): 5900 = ¥59.00"))
    reason = forms.ChoiceField(
        choices=[
            (RefundReason.CUSTOMER_REQUEST, "Customer request"),
            (RefundReason.OPS, "Ops"),
        ]
    )
    note = forms.CharField(widget=forms.Textarea, required=False, max_length=1000)


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ("key", "order", "created")
    search_fields = ("key", "order__public_id")
    readonly_fields = ("key", "request_digest", "order", "created_at")

    created = time_column("created_at", _("created"))
