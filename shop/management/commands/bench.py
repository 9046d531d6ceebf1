"""``manage.py bench``: benchmark figures on a scratch database that is created and dropped."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from typing import Any
from urllib.parse import urlparse

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from psycopg import sql


class Command(BaseCommand):
    help = "Print benchmark figures (ratios against the bare SQL measured in the same run)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=2000)
        parser.add_argument("--in-place", action="store_true", help=argparse_suppress())

    def handle(self, *args: Any, **options: Any) -> None:
        if options["in_place"]:
            from shop.benchmarks import run_all

            run_all(options["count"], self.stdout.write)
            return
        db = settings.DATABASES["default"]
        name = f"oncepay_bench_{secrets.token_hex(4)}"
        admin = psycopg.connect(
            dbname="postgres", user=db["USER"], password=db.get("PASSWORD") or None,
            host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, autocommit=True,
        )  # fmt: skip
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        # The benchmark's metrics go to a directory of its own: its made-up captures must never
        # show in a running stack's /metrics.
        metrics_dir = tempfile.mkdtemp(prefix="oncepay-bench-metrics-")
        try:
            host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
            url = urlparse(f"postgres://{db['USER']}@{host}/{name}")
            env = {
                **os.environ,
                "DATABASE_URL": url.geturl(),
                "LOG_LEVEL": "WARNING",
                "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
            }
            manage = [sys.executable, "manage.py"]
            subprocess.run([*manage, "migrate", "--no-input", "-v0"], env=env, check=True)
            subprocess.run(
                [*manage, "bench", "--in-place", "--count", str(options["count"])],
                env=env,
                check=True,
            )
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            admin.close()


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS
