from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from shop.models import OutboxEvent, Product


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "name", "price_amount", "currency", "stock", "is_active", "updated_at")
    list_filter = ("is_active", "currency")
    search_fields = ("sku", "name")


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = (
        "event_id",
        "topic",
        "status",
        "deliveries",
        "next_attempt_at",
        "last_error",
        "created_at",
    )
    list_filter = ("status", "topic", "created_at")
    search_fields = ("event_id", "payload")
    readonly_fields = [f.name for f in OutboxEvent._meta.fields]
    actions = ["redeliver"]

    @admin.action(description="Deliver again now")
    def redeliver(self, request: HttpRequest, queryset: QuerySet[OutboxEvent]) -> None:
        from django.utils import timezone

        for event in queryset:
            OutboxEvent.objects.filter(pk=event.pk).update(
                status=OutboxEvent.Status.PENDING, next_attempt_at=timezone.now()
            )
            self.log_change(request, event, "Queued for redelivery")
        self.message_user(request, f"{queryset.count()} event(s) queued for delivery.")
