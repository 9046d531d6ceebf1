"""``manage.py bench <scenario> [...]`` (or ``all``): benchmark figures, each scenario on a
scratch database, Redis key prefix and metrics directory that are made for it and dropped."""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_redis import get_redis_connection
from psycopg import sql

from shop.bench.scenarios import SCENARIOS, scenario


class Command(BaseCommand):
    help = (
        "Print benchmark figures next to a floor measured in the same run. Scenarios: "
        + ", ".join(SCENARIOS)
        + ", or all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("scenarios", nargs="+", metavar="scenario")
        parser.add_argument(
            "--tiny", action="store_true", help="seconds-long sizes (a smoke run, not figures)"
        )
        parser.add_argument("--in-place", action="store_true", help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        names: list[str] = options["scenarios"]
        if names == ["all"]:
            names = list(SCENARIOS)
        unknown = [name for name in names if name not in SCENARIOS]
        if unknown:
            raise CommandError(
                f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}, all"
            )
        if options["in_place"]:
            for name in names:
                scenario(name)(tiny=options["tiny"], write=self._write)
            return
        for name in names:
            self._run_on_scratch(name, tiny=options["tiny"])

    def _write(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def _run_on_scratch(self, name: str, *, tiny: bool) -> None:
        db = settings.DATABASES["default"]
        token = secrets.token_hex(4)
        database = f"oncepay_bench_{token}"
        prefix = f"oncepay-bench-{token}"
        host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
        admin = psycopg.connect(
            dbname="postgres", user=db["USER"], password=db.get("PASSWORD") or None,
            host=host, port=port, autocommit=True,
        )  # fmt: skip
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        # The benchmark's metrics go to a directory of its own: its made-up captures must never
        # show in a running stack's /metrics.
        metrics_dir = tempfile.mkdtemp(prefix="oncepay-bench-metrics-")
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}{password}@{host}:{port}/{database}",
            "REDIS_KEY_PREFIX": prefix,
            "LOG_LEVEL": "WARNING",
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        }
        manage = [sys.executable, "manage.py"]
        try:
            subprocess.run([*manage, "migrate", "--no-input", "-v0"], env=env, check=True)
            argv = [*manage, "bench", "--in-place", name, *(["--tiny"] if tiny else [])]
            done = subprocess.run(argv, env=env, check=False)
            if done.returncode != 0:
                raise CommandError(f"scenario {name} failed (exit {done.returncode})")
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )
            admin.close()
            _forget_redis_prefix(prefix)


def _forget_redis_prefix(prefix: str) -> None:
    client = get_redis_connection("default")
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
