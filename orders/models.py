from __future__ import annotations

from django.db import models
from django.db.models import Q

from shop.ids import new_public_id
from shop.money import Money


def new_order_id() -> str:
    return new_public_id("ord")


class OrderStatus(models.TextChoices):
    UNPAID = "unpaid", "Unpaid"
    PAID = "paid", "Paid"
    CLOSED = "closed", "Closed"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"


class CloseReason(models.TextChoices):
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled by the shopper"


class Order(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=new_order_id, editable=False)
    email = models.EmailField()
    status = models.CharField(
        max_length=20, choices=OrderStatus.choices, default=OrderStatus.UNPAID, db_index=True
    )
    total_amount = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    # The browser session's shopper key that owns the order (pages), if made from a page.
    owner_key = models.CharField(max_length=64, blank=True, default="", db_index=True)
    # One-time token of the checkout form: a double submit finds the order it already made.
    checkout_token = models.CharField(max_length=64, null=True, blank=True, unique=True)
    expires_at = models.DateTimeField(db_index=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    paid_attempt = models.ForeignKey(
        "payments.PaymentAttempt",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=20, choices=CloseReason.choices, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(total_amount__gt=0), name="order_total_positive"),
            models.CheckConstraint(
                condition=Q(status="unpaid") | ~Q(status="paid") | Q(paid_attempt__isnull=False),
                name="paid_order_has_paid_attempt",
            ),
        ]
        indexes = [
            # The expiry sweep's index: unpaid orders only, so finding the next ones to close
            # costs what is due, not every order that ever expired (paid and closed ones leave
            # it; a plain (status, expires_at) or expires_at index keeps them all).
            models.Index(
                fields=["expires_at"],
                condition=Q(status="unpaid"),
                name="order_unpaid_expiry",
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def total(self) -> Money:
        return Money(self.total_amount, self.currency)

    @property
    def is_paid(self) -> bool:
        return self.status in {
            OrderStatus.PAID,
            OrderStatus.PARTIALLY_REFUNDED,
            OrderStatus.REFUNDED,
        }


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey("shop.Product", on_delete=models.PROTECT, related_name="+")
    # Snapshot at order time: later price or name changes never alter an order.
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    unit_price = models.PositiveIntegerField()
    quantity = models.PositiveIntegerField()
    line_total = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="order_line_quantity_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.sku}"


class IdempotencyKey(models.Model):
    """An API client's Idempotency-Key for order creation, held by a unique constraint."""

    key = models.CharField(max_length=255, unique=True)
    request_digest = models.CharField(max_length=64)
    # Inserted first, in the same transaction as the order: a concurrent request with the same
    # key waits on the unique index, then finds the committed order.
    order = models.ForeignKey(Order, null=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return self.key
