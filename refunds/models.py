from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from shop.ids import new_public_id, random_base32


def new_refund_id() -> str:
    return new_public_id("rfd")


def new_out_refund_no() -> str:
    return "RF" + random_base32(24).upper()


class RefundReason(models.TextChoices):
    DUPLICATE_PAYMENT = "duplicate_payment", "Duplicate payment"
    ORDER_CLOSED = "order_closed", "Paid after the order closed"
    CUSTOMER_REQUEST = "customer_request", "Customer request"
    OPS = "ops", "Ops"


AUTOMATIC_REASONS = (RefundReason.DUPLICATE_PAYMENT, RefundReason.ORDER_CLOSED)


class RefundStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Refund(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=new_refund_id, editable=False)
    attempt = models.ForeignKey(
        "payments.PaymentAttempt", on_delete=models.PROTECT, related_name="refunds"
    )
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="refunds")
    amount = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=20, choices=RefundReason.choices)
    note = models.TextField(blank=True, default="")
    # Our idempotency key at the gateway: every retry sends the same one.
    out_refund_no = models.CharField(max_length=64, unique=True, default=new_out_refund_no)
    status = models.CharField(
        max_length=10, choices=RefundStatus.choices, default=RefundStatus.PENDING, db_index=True
    )
    gateway_refund_id = models.CharField(max_length=64, blank=True, default="")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approval_required = models.BooleanField(default=False)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    submissions = models.PositiveIntegerField(default=0)
    next_check_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    succeeded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        # One per money action (refunds.permissions); is_staff alone grants none of them.
        permissions = [
            ("request_refund", "Can refund an order (staff refund API and admin)"),
            ("approve_refund", "Can approve a refund above the threshold (second person)"),
            ("retry_refund", "Can retry a failed refund at the gateway"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.UniqueConstraint(
                fields=["attempt", "reason"],
                condition=Q(reason__in=["duplicate_payment", "order_closed"]),
                name="one_automatic_refund_per_cause",
            ),
        ]

    def __str__(self) -> str:
        return self.out_refund_no

    @property
    def is_approved(self) -> bool:
        return not self.approval_required or self.approved_at is not None
