from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the sandbox payment gateway (Alipay + WeChat Pay v3) in the foreground."
    # The sandbox uses no database and no Django machinery: skip the checks that would need them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument(
            "--base-url",
            default=None,
            help="URL shoppers and merchants use to reach the sandbox (default: from host/port)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from sandbox.server import serve

        serve(options["host"], options["port"], options["base_url"])
