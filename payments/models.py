from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from shop.ids import new_public_id, random_base32
from shop.money import Money


def new_attempt_id() -> str:
    return new_public_id("pay")


def new_out_trade_no() -> str:
    # 26 characters of [A-Z2-7]: inside WeChat's 6-32 [0-9A-Za-z_-|*] and Alipay's 64.
    return "OP" + random_base32(24).upper()


class Channel(models.TextChoices):
    ALIPAY = "alipay", _("Alipay")
    WECHAT = "wechat", _("WeChat Pay")


class Client(models.TextChoices):
    PC = "pc", "PC (QR code)"
    WAP = "wap", "Mobile browser"
    APP = "app", "App"


class AttemptStatus(models.TextChoices):
    CREATED = "created", "Created"
    PAYING = "paying", "Paying"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CLOSED = "closed", "Closed"
    NEEDS_ATTENTION = "needs_attention", "Needs attention"


LIVE_STATUSES = (AttemptStatus.CREATED, AttemptStatus.PAYING)
# Live, or live once and not yet known to be closed: still polled, closed at the gateway before
# a new attempt or the order's close.
UNSETTLED_STATUSES = (*LIVE_STATUSES, AttemptStatus.NEEDS_ATTENTION)
# Polled while ``next_poll_at`` is set. Closed attempts are watched until the order's deadline
# plus the late-payment grace: a gateway may still take a payment on a trade we closed (a close
# it ignored, an Alipay page opened after we closed it), and a lost callback must not hide it.
WATCHED_STATUSES = (*UNSETTLED_STATUSES, AttemptStatus.CLOSED)


class AttentionReason(models.TextChoices):
    """Why an attempt waits for a person. Only what a person must look at: an open, unpaid
    trade is not one of them (it stays live until the order's deadline)."""

    GATEWAY_SILENT = "gateway_silent", "Gateway silent through the whole poll schedule"
    AMOUNT_MISMATCH = "amount_mismatch", "Gateway reports another amount or currency"
    CONTRADICTION = "contradiction", "Gateway contradicts what it said before"


class PaymentAttempt(models.Model):
    """One trade we opened at one gateway for one order (the payment stream)."""

    public_id = models.CharField(max_length=40, unique=True, default=new_attempt_id, editable=False)
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="attempts")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    client = models.CharField(max_length=10, choices=Client.choices)
    out_trade_no = models.CharField(max_length=64, unique=True, default=new_out_trade_no)
    amount = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=20, choices=AttemptStatus.choices, default=AttemptStatus.CREATED, db_index=True
    )
    # Bumped on every transition; writers update "WHERE version = <read>" so a stale writer
    # (one whose lock expired mid-flight) changes nothing.
    version = models.PositiveIntegerField(default=1)
    action = models.JSONField(default=dict, blank=True)
    gateway_trade_no = models.CharField(max_length=64, blank=True, default="")
    captured_amount = models.PositiveIntegerField(default=0)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    poll_step = models.PositiveSmallIntegerField(default=0)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    # The last answer a query or callback gave about this trade (a TradeOutcome): "unknown"
    # means the gateway did not answer, so the shopper is told we are confirming.
    last_outcome = models.CharField(max_length=20, blank=True, default="")
    attention_reason = models.CharField(
        max_length=20, choices=AttentionReason.choices, blank=True, default=""
    )
    paid_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        # Admin actions that talk to the gateway about real money (refunds.permissions).
        permissions = [
            ("query_gateway", "Can query the gateway about a payment attempt now"),
            ("close_at_gateway", "Can close a payment attempt at its gateway"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["order"],
                condition=Q(status__in=["created", "paying"]),
                name="one_live_attempt_per_order",
            ),
            models.CheckConstraint(condition=Q(amount__gt=0), name="attempt_amount_positive"),
            models.CheckConstraint(
                condition=Q(captured_amount__lte=models.F("amount")),
                name="attempt_captured_not_above_amount",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_poll_at"],
                condition=Q(next_poll_at__isnull=False),
                name="attempt_poll_due",
            ),
        ]

    def __str__(self) -> str:
        return self.out_trade_no

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)


class GatewayEvent(models.Model):
    """Everything a gateway told us, stored raw, committed on its own before it is acted on."""

    class Kind(models.TextChoices):
        NOTIFICATION = "notification", "Notification"
        QUERY = "query", "Query result"
        CLOSE = "close", "Close result"
        PREPAY = "prepay", "Prepay result"
        RETURN = "return", "Return redirect"
        REFUND = "refund", "Refund result"

    channel = models.CharField(max_length=10, choices=Channel.choices)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The gateway's notification id (Alipay notify_id, WeChat event id); deduplicates deliveries.
    event_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    out_trade_no = models.CharField(max_length=64, blank=True, default="", db_index=True)
    attempt = models.ForeignKey(
        PaymentAttempt, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    outcome = models.CharField(max_length=20, blank=True, default="")
    verified = models.BooleanField(default=False)
    rejection = models.CharField(max_length=200, blank=True, default="")
    headers = models.JSONField(default=dict, blank=True)
    body = models.TextField(blank=True, default="")
    payload = models.TextField(blank=True, default="", help_text="Verified or decrypted content.")
    deliveries = models.PositiveIntegerField(default=1)
    processed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "event_id"],
                condition=Q(event_id__isnull=False),
                name="gateway_event_unique_notification",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.kind} {self.out_trade_no}"


class StateChange(models.Model):
    """Append-only audit trail: one row per attempt, order or refund transition, written by the
    decision service in the transaction that made it."""

    class Entity(models.TextChoices):
        ATTEMPT = "attempt", "Payment attempt"
        ORDER = "order", "Order"
        REFUND = "refund", "Refund"

    entity = models.CharField(max_length=10, choices=Entity.choices)
    order = models.ForeignKey("orders.Order", on_delete=models.PROTECT, related_name="+")
    attempt = models.ForeignKey(
        PaymentAttempt, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    refund = models.ForeignKey(
        "refunds.Refund", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    from_status = models.CharField(max_length=20)
    to_status = models.CharField(max_length=20)
    transition = models.CharField(max_length=40, help_text="The decision function that ran.")
    # notification, poll, close, sweep, reconciliation, apply_pay, admin:<user> ...
    cause = models.CharField(max_length=80)
    detail = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["order", "created_at"], name="state_change_order")]

    def __str__(self) -> str:
        return f"{self.entity} {self.from_status} -> {self.to_status} ({self.cause})"
