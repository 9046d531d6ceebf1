"""``manage.py reconcile_bench``: reconcile a generated day of ``--lines`` statement lines per
channel, in each gateway's real format, and print lines per second and peak memory next to a
floor measured in the same run (``reconciliation.bench``; the table is the one ``manage.py bench
reconciliation`` prints).

Runs on a scratch database it creates, migrates and drops; ``--in-place`` runs on the current
database instead, which must itself be a scratch one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reconciliation.bench import CHANNELS, floor, reconcile_bench, scratch_database


class Command(BaseCommand):
    help = "Benchmark reconciliation of a generated statement per channel against a COPY floor."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--lines", type=int, default=1_000_000, help="lines per statement")
        parser.add_argument("--channel", choices=CHANNELS, action="append")
        parser.add_argument("--in-place", action="store_true", help=argparse.SUPPRESS)
        parser.add_argument("--floor", metavar="FILE", help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        channels = options["channel"] or list(CHANNELS)
        if options["floor"]:
            self.stdout.write(floor(Path(options["floor"]), channels[0]))
            return
        if options["in_place"]:
            from shop.bench.reconcile import report

            report(reconcile_bench(lines=options["lines"], channels=channels, write=self._write),
                   self._write)  # fmt: skip
            return
        with scratch_database() as url:
            env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
            manage = [sys.executable, "manage.py"]
            subprocess.run([*manage, "migrate", "--no-input", "-v0"], env=env, check=True)
            argv = [*manage, "reconcile_bench", "--in-place", "--lines", str(options["lines"])]
            for channel in channels:
                argv += ["--channel", channel]
            subprocess.run(argv, env=env, check=True)

    def _write(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
