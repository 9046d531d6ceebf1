"""``manage.py bench_pages``: open order pages against a running shop (``scripts/run``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Open N polling order pages against a running shop; time health, callback and page."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default=settings.SHOP_BASE_URL, help="the running shop")
        parser.add_argument("--pages", type=int, default=200)
        parser.add_argument("--seconds", type=float, default=20.0)
        parser.add_argument("--interval", type=float, default=3.0, help="status.js's poll")

    def handle(self, *args: Any, **options: Any) -> None:
        from shop.pagebench import run

        run(
            options["url"].rstrip("/"),
            options["pages"],
            options["seconds"],
            options["interval"],
            self.stdout.write,
        )
