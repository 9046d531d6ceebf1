"""``manage.py chaos``: simulated shoppers against a private stack while faults are injected,
then the invariants of product.md checked against the sandbox ledger. Exit status 1 on any
violation. See ``chaos/`` for the parts."""

from __future__ import annotations

import logging
import random
import shlex
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chaos.faults import FaultSpecError, parse_process_faults, parse_sandbox_faults
from chaos.runner import RunConfig, run


def _database_url() -> str:
    db = settings.DATABASES["default"]
    auth = str(db.get("USER") or "postgres")
    if db.get("PASSWORD"):
        auth += f":{db['PASSWORD']}"
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/postgres"


class Command(BaseCommand):
    help = (
        "Chaos run: shoppers over HTTP against a private stack (own database, Redis prefix, "
        "ports) with sandbox and process faults; checks invariants 1-5 and prints a report."
    )
    # The run starts its own processes against its own database; this one needs neither checks
    # nor a connection to the default database.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--shoppers", type=int, default=12)
        parser.add_argument("--duration", type=float, default=120.0, help="seconds of load")
        parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
        parser.add_argument(
            "--faults",
            default="all",
            help="sandbox faults: 'all', 'none', or name=rate,... (e.g. notify_drop=0.3)",
        )
        parser.add_argument(
            "--process-faults",
            default="",
            help="kill_worker,restart_redis,kill_web,lock_off,short_lock,double_beat or 'all'",
        )
        parser.add_argument("--lock-disabled", action="store_true", help="PAYMENT_LOCK_ENABLED=0")
        parser.add_argument(
            "--short-lock-ttl",
            action="store_true",
            help="lock TTL 0.5s, shorter than a gateway call",
        )
        parser.add_argument("--order-ttl", type=int, default=25, help="ORDER_TTL_SECONDS")
        parser.add_argument(
            "--quiesce-timeout", type=float, default=0.0, help="seconds (default: order TTL + 35)"
        )
        parser.add_argument("--use-running", default="", metavar="URL", help="a running shop")
        parser.add_argument("--sandbox", default="", metavar="URL", help="its sandbox")
        parser.add_argument("--keep-db", action="store_true", help="keep the run's database")
        parser.add_argument(
            "--no-snapshot",
            action="store_true",
            help="run the stack from the working tree instead of a copy taken at start",
        )
        parser.add_argument("--redis-db", type=int, default=14)
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--worker-concurrency", type=int, default=4)
        parser.add_argument("--report-json", default="", metavar="PATH")

    def handle(self, *args: Any, **options: Any) -> None:
        seed = (
            options["seed"]
            if options["seed"] is not None
            else random.SystemRandom().randrange(1 << 31)
        )
        try:
            sandbox_faults = parse_sandbox_faults(options["faults"])
            process_faults = parse_process_faults(options["process_faults"])
        except FaultSpecError as exc:
            raise CommandError(str(exc)) from exc
        if bool(options["use_running"]) != bool(options["sandbox"]):
            raise CommandError("--use-running and --sandbox go together")
        if options["shoppers"] < 1 or options["duration"] <= 0:
            raise CommandError("--shoppers must be >= 1 and --duration > 0")
        logging.basicConfig(
            level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        using = bool(options["use_running"])
        cfg = RunConfig(
            seed=seed,
            shoppers=options["shoppers"],
            duration=options["duration"],
            sandbox_faults=sandbox_faults,
            process_faults=process_faults,
            lock_disabled=options["lock_disabled"],
            short_lock_ttl=options["short_lock_ttl"],
            order_ttl_seconds=settings.ORDER_TTL_SECONDS if using else options["order_ttl"],
            quiesce_seconds=options["quiesce_timeout"],
            use_running=options["use_running"],
            sandbox_url=options["sandbox"],
            keep_database=options["keep_db"],
            snapshot=not options["no_snapshot"],
            redis_db=options["redis_db"],
            workers=options["web_workers"],
            worker_concurrency=options["worker_concurrency"],
            database_url=_database_url(),
            redis_url=settings.REDIS_URL,
            reproduce=self._reproduce(seed),
            # The run's own stack uses short timings; a running one is judged by ours.
            **(
                {
                    "poll_schedule": tuple(settings.PAYMENT_POLL_SCHEDULE),
                    "sweep_interval_seconds": settings.SWEEP_INTERVAL_SECONDS,
                    "gateway_read_timeout": settings.GATEWAY_READ_TIMEOUT,
                }
                if using
                else {}
            ),
        )
        report = run(cfg, lambda line: self.stdout.write(line))
        self.stdout.write(report.render())
        if options["report_json"]:
            Path(options["report_json"]).write_text(report.to_json())
        if report.exit_code:
            self.stderr.write(f"{len(report.violations)} violation(s); replay with --seed {seed}")
            sys.exit(report.exit_code)

    @staticmethod
    def _reproduce(seed: int) -> str:
        """The command line again, with the seed made explicit."""
        args = sys.argv[1:]
        kept: list[str] = []
        index = 0
        while index < len(args):
            if args[index] == "--seed":
                index += 2  # the flag and its value
                continue
            if not args[index].startswith("--seed="):
                kept.append(args[index])
            index += 1
        return "python manage.py " + shlex.join([*kept, "--seed", str(seed)])
