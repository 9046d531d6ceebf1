from __future__ import annotations

from django.conf import settings
from django.db import models


class StatementRun(models.Model):
    """One reconciliation of one gateway's statement for one day. Re-running updates it."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        NOT_READY = "not_ready", "Statement not published yet (retried)"
        DONE = "done", "Done"
        FAILED = "failed", "Failed (statement not available)"

    class Phase(models.TextChoices):
        NONE = "", "—"
        DOWNLOAD = "download", "Downloading the statement"
        STAGE = "stage", "Reading lines into the database"
        MATCH = "match", "Matching against our books"
        FINISHED = "finished", "Finished"

    channel = models.CharField(max_length=10)
    statement_date = models.DateField()
    status = models.CharField(max_length=10, choices=Status.choices)
    phase = models.CharField(max_length=10, choices=Phase.choices, blank=True, default="")
    lines_read = models.PositiveIntegerField(default=0, help_text="Progress while reading.")
    payment_lines = models.PositiveIntegerField(default=0)
    refund_lines = models.PositiveIntegerField(default=0)
    statement_bytes = models.BigIntegerField(default=0)
    healed = models.PositiveIntegerField(default=0)
    open_findings = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True, default="")
    runs = models.PositiveIntegerField(default=0)
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds per phase.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-statement_date", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "statement_date"], name="one_run_per_day"),
        ]
        permissions = [("start_statementrun", "Can start a reconciliation run")]

    def __str__(self) -> str:
        return f"{self.channel} {self.statement_date}"


class Finding(models.Model):
    """Where our books and the gateway's statement disagree, and what was done about it."""

    class Kind(models.TextChoices):
        NOT_RECORDED = "not_recorded", "Captured at the gateway, not recorded as paid here"
        UNKNOWN_TRADE = "unknown_trade", "Captured at the gateway, no such trade here"
        MISSING_AT_GATEWAY = "missing_at_gateway", "Paid here, not in the statement"
        AMOUNT_MISMATCH = "amount_mismatch", "Amounts differ"
        DUPLICATE_CAPTURE = "duplicate_capture", "Extra capture on an order, no refund"
        REFUND_NOT_RECORDED = "refund_not_recorded", "Refunded at the gateway, not here"
        REFUND_MISSING_AT_GATEWAY = "refund_missing_at_gateway", "Refunded here, not there"
        REFUND_AMOUNT_MISMATCH = "refund_amount_mismatch", "Refund amounts differ"

    class State(models.TextChoices):
        HEALED = "healed", "Healed automatically"
        OPEN = "open", "Open: ops must look"
        RESOLVED = "resolved", "Acknowledged by ops"

    run = models.ForeignKey(StatementRun, on_delete=models.CASCADE, related_name="findings")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    state = models.CharField(max_length=10, choices=State.choices, db_index=True)
    out_trade_no = models.CharField(max_length=64, blank=True, default="", db_index=True)
    out_refund_no = models.CharField(max_length=64, blank=True, default="")
    attempt = models.ForeignKey(
        "payments.PaymentAttempt",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    gateway_amount = models.IntegerField(null=True, blank=True)
    local_amount = models.IntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, default="CNY")
    detail = models.CharField(max_length=500, blank=True, default="")
    note = models.TextField(blank=True, default="", help_text="What ops found and did.")
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "kind", "out_trade_no", "out_refund_no"],
                name="one_finding_per_cause",
            ),
        ]
        permissions = [
            ("acknowledge_finding", "Can acknowledge findings"),
            ("export_finding", "Can export findings as CSV"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.out_trade_no}"
