from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.models import DELETION, LogEntry
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from payments.models import AttemptStatus, AttentionReason, PaymentAttempt
from reconciliation.models import Finding
from refunds.admin import AWAITING_APPROVAL
from refunds.models import Refund, RefundStatus
from shop.admin_display import money_column, short_id_column, time_column, time_zone_shown
from shop.dashboard import Watch, needs_a_person
from shop.models import OutboxEvent, Product

# Pending, and its last delivery failed: the worker retries it with backoff.
OUTBOX_FAILING = Q(status=OutboxEvent.Status.PENDING) & ~Q(last_error="")

ATTENTION = _("Payment attempts needing attention")
REFUNDS = _("Refunds")
RECONCILIATION = _("Reconciliation")
OUTBOX = _("Outbox (downstream notifications)")

# The admin index's "Needs a person" panel, in this order. Each count links to the changelist
# filtered by the same parameters (see shop.dashboard).
NEEDS_A_PERSON: tuple[Watch, ...] = (
    Watch(
        key="attempts-needs_attention",
        group=ATTENTION,
        label=_("All reasons"),
        model=PaymentAttempt,
        params={"status__exact": AttemptStatus.NEEDS_ATTENTION},
    ),
    *(
        Watch(
            key=f"attempts-{reason.value}",
            group=ATTENTION,
            label=reason.label,
            model=PaymentAttempt,
            params={
                "status__exact": AttemptStatus.NEEDS_ATTENTION,
                "attention_reason__exact": reason.value,
            },
        )
        for reason in AttentionReason
    ),
    Watch(
        key="refunds-awaiting_approval",
        group=REFUNDS,
        label=_("Pending approval by a second person"),
        model=Refund,
        params={"approval": "awaiting"},
        rows=AWAITING_APPROVAL,
    ),
    Watch(
        key="refunds-failed",
        group=REFUNDS,
        label=_("Failed"),
        model=Refund,
        params={"status__exact": RefundStatus.FAILED},
    ),
    Watch(
        key="findings-open",
        group=RECONCILIATION,
        label=_("Open findings"),
        model=Finding,
        params={"state__exact": Finding.State.OPEN},
    ),
    Watch(
        key="outbox-failing",
        group=OUTBOX,
        label=_("Failing, still retried"),
        model=OutboxEvent,
        params={"delivery": "failing"},
        rows=OUTBOX_FAILING,
    ),
    Watch(
        key="outbox-dead",
        group=OUTBOX,
        label=_("Undeliverable (retries exhausted)"),
        model=OutboxEvent,
        params={"status__exact": OutboxEvent.Status.DEAD},
    ),
)


class OpsAdminSite(admin.AdminSite):
    """The default site, with the "Needs a person" counts on its index. Installed by swapping
    the class of ``admin.site`` (below) so every registration, made before or after, stays."""

    def index(self, request: HttpRequest, extra_context: Any = None) -> TemplateResponse:
        context = {
            "needs_a_person": needs_a_person(request.user, NEEDS_A_PERSON, site=self.name),
            "time_zone_shown": time_zone_shown(),
            **(extra_context or {}),
        }
        return super().index(request, context)


# Before the URLconf is read (admin modules load at startup), so the index URL binds this one.
admin.site.__class__ = OpsAdminSite


class ProductForm(forms.ModelForm):
    class Meta:
        model = Product
        fields = ("sku", "name", "price_amount", "currency", "stock", "is_active")
        help_texts = {"price_amount": _("in fen (minor units): 5900 = ¥59.00")}


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    list_display = ("sku", "name", "price", "stock", "is_active", "updated")
    list_filter = ("is_active", "currency")
    search_fields = ("sku", "name")

    price = money_column("price_amount", _("price"))
    updated = time_column("updated_at", _("updated"))


class DeliveryFilter(admin.SimpleListFilter):
    title = _("delivery")
    parameter_name = "delivery"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("failing", _("Failing, still retried")),
            ("dead", _("Undeliverable")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() == "failing":
            return queryset.filter(OUTBOX_FAILING)
        if self.value() == "dead":
            return queryset.filter(status=OutboxEvent.Status.DEAD)
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = (
        "event",
        "topic",
        "status",
        "deliveries",
        "next_attempt",
        "last_error",
        "created",
    )
    list_filter = (DeliveryFilter, "status", "topic", "created_at")
    search_fields = ("event_id", "payload")
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
    actions = ["redeliver"]

    event = short_id_column("event_id", _("event"))
    next_attempt = time_column("next_attempt_at", _("next attempt"))
    created = time_column("created_at", _("created"))

    @admin.action(description="Deliver again now")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        from django.utils import timezone

        for event in queryset:
            OutboxEvent.objects.filter(pk=event.pk).update(
                status=OutboxEvent.Status.PENDING, next_attempt_at=timezone.now()
            )
            self.log_change(request, event, "Queued for redelivery")
        self.message_user(request, f"{queryset.count()} event(s) queued for delivery.")


@admin.register(LogEntry)
class LogEntryAdmin(admin.ModelAdmin):
    """The admin's log of staff actions, read-only: who did what to which object, and when."""

    list_display = ("when", "user", "content_type", "object_link", "action_flag", "message")
    list_filter = ("user", "content_type", "action_flag", "action_time")
    search_fields = ("object_repr", "change_message", "user__username")
    list_select_related = ("user", "content_type")
    date_hierarchy = "action_time"
    # The log only grows: no count of the whole table on every filtered page.
    show_full_result_count = False

    when = time_column("action_time", _("time"), seconds=True)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("object"), ordering="object_repr")
    def object_link(self, entry: LogEntry) -> str:
        url = None if entry.action_flag == DELETION else entry.get_admin_url()
        if not url:
            return entry.object_repr
        return format_html('<a href="{}">{}</a>', url, entry.object_repr)

    @admin.display(description=_("change message"))
    def message(self, entry: LogEntry) -> str:
        return entry.get_change_message()
