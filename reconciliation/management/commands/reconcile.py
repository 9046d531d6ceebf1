import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.gateways.registry import CHANNELS
from reconciliation.services import china_today, reconcile_day


class Command(BaseCommand):
    help = "Reconcile gateway statements for a day (default: yesterday, China time)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", help="YYYY-MM-DD, or 'today'")
        parser.add_argument("--channel", choices=CHANNELS)

    def handle(self, *args: Any, **options: Any) -> None:
        raw = options.get("date")
        if raw == "today":
            day = china_today()
        elif raw:
            try:
                day = dt.date.fromisoformat(raw)
            except ValueError as exc:
                raise CommandError("--date must be YYYY-MM-DD or 'today'") from exc
        else:
            day = china_today() - dt.timedelta(days=1)
        failed = False
        for channel in [options["channel"]] if options.get("channel") else CHANNELS:
            run = reconcile_day(channel=channel, day=day)
            failed |= run.status != "done"
            self.stdout.write(
                f"{channel} {day}: {run.status} — {run.payment_lines} payments, "
                f"{run.refund_lines} refunds, {run.healed} healed, {run.open_findings} open"
                + (f" ({run.error})" if run.error else "")
            )
        if failed:
            raise CommandError("a statement could not be reconciled")
