import uuid

from django.db import models

# Pictures shipped in static/shop/products/, one per kind of product.
PRODUCT_PICTURES = frozenset({"tea", "mug", "pot", "set", "cup"})


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    price_amount = models.PositiveIntegerField(help_text="Price in minor units (fen, cents).")
    currency = models.CharField(max_length=3, default="CNY")
    stock = models.IntegerField(default=0)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(stock__gte=0), name="product_stock_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(price_amount__gt=0), name="product_price_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"

    @property
    def picture(self) -> str:
        """The static path of the product's picture (by the SKU's kind: TEA-001 → tea), or ""."""
        kind = self.sku.split("-", 1)[0].lower()
        return f"shop/products/{kind}.svg" if kind in PRODUCT_PICTURES else ""


class OutboxEvent(models.Model):
    """A downstream notification written in the same transaction as the change it reports."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        DEAD = "dead", "Undeliverable"

    event_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    topic = models.CharField(max_length=50, db_index=True)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    deliveries = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.topic} {self.event_id}"
