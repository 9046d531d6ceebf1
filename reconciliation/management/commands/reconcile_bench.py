"""``manage.py reconcile_bench``: reconcile a generated day of ``--lines`` statement lines per
channel, in each gateway's real format, and print lines per second and peak memory next to a
floor measured in the same run.

Runs on a scratch database (created, migrated, dropped). For each channel it writes the
statement (``reconciliation.benchgen``), ``COPY``s the matching books, starts a sandbox that
serves the file (``SANDBOX_BILL_DIR``), and runs ``manage.py reconcile`` as its own process —
download over HTTP, digest, parse, stage, match — measuring its wall time and peak RSS
(``wait4``). The floor is another process that only decompresses the same file, ``COPY``s its
raw lines into a table and runs one join against the attempts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import psycopg
import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from psycopg import sql

CHANNELS = ("alipay", "wechat")


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    output: str


def run_measured(argv: list[str], env: dict[str, str]) -> Measured:
    """Run a process to its end; its wall time and peak resident memory (from ``wait4``)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode("utf-8", errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:4])} failed:\n{output[-3000:]}")
    return Measured(seconds, usage.ru_maxrss / 1024, output)  # ru_maxrss: KiB on Linux


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh database on the configured server; yields its URL, drops it afterwards."""
    db = settings.DATABASES["default"]
    server = dict(
        user=db["USER"], password=db.get("PASSWORD") or None,
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
    )  # fmt: skip
    name = f"oncepay_rbench_{secrets.token_hex(4)}"
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"postgres://{db['USER']}@{server['host']}:{server['port']}/{name}"
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def sandbox_serving(bill_dir: Path, env: dict[str, str]) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_sandbox", "--port", str(port)],
        env={**env, "SANDBOX_BILL_DIR": str(bill_dir), "SANDBOX_LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/sandbox/faults", timeout=1).ok:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the sandbox did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


class Command(BaseCommand):
    help = "Benchmark reconciliation of a generated statement per channel against a COPY floor."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--lines", type=int, default=1_000_000, help="lines per statement")
        parser.add_argument("--channel", choices=CHANNELS, action="append")
        parser.add_argument("--in-place", action="store_true", help=_hidden())
        parser.add_argument("--floor", metavar="FILE", help=_hidden())

    def handle(self, *args: Any, **options: Any) -> None:
        channels = options["channel"] or list(CHANNELS)
        if options["floor"]:
            self.stdout.write(floor(Path(options["floor"]), channels[0]))
            return
        if options["in_place"]:
            self._bench(channels, options["lines"])
            return
        with scratch_database() as url:
            env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
            manage = [sys.executable, "manage.py"]
            subprocess.run([*manage, "migrate", "--no-input", "-v0"], env=env, check=True)
            argv = [*manage, "reconcile_bench", "--in-place", "--lines", str(options["lines"])]
            for channel in channels:
                argv += ["--channel", channel]
            subprocess.run(argv, env=env, check=True)

    def _bench(self, channels: list[str], lines: int) -> None:
        from reconciliation.benchgen import BenchDay, copy_books, write_statement
        from reconciliation.models import Finding, StatementRun
        from reconciliation.services import china_today

        day = china_today() - dt.timedelta(days=1)
        gateways = settings.PAYMENT_GATEWAYS
        out = self.stdout.write
        with tempfile.TemporaryDirectory(prefix="oncepay-rbench-") as tmp:
            directory = Path(tmp)
            days = {}
            for index, channel in enumerate(channels):
                bench = BenchDay(channel=channel, day=day, lines=lines, id_base=index * lines)
                started = time.perf_counter()
                path = write_statement(
                    bench,
                    directory,
                    seller_id=gateways["alipay"]["SELLER_ID"],
                    appid=gateways["wechat"]["APPID"],
                    mchid=gateways["wechat"]["MCHID"],
                )
                generated = time.perf_counter() - started
                started = time.perf_counter()
                copy_books(bench)
                out(
                    f"{channel}: statement of {lines:,} lines, {path.stat().st_size / 2**20:.1f} MB"
                    f" written in {generated:.1f} s; books COPY-ed in"
                    f" {time.perf_counter() - started:.1f} s"
                )
                days[channel] = (bench, path)
            env = {**os.environ, "LOG_LEVEL": "WARNING"}
            bare = run_measured([sys.executable, "manage.py", "check", "-v0"], env)
            rows = []
            with sandbox_serving(directory, env) as sandbox_url:
                env["SANDBOX_BASE_URL"] = sandbox_url
                for channel, (bench, path) in days.items():
                    ours = run_measured(
                        [sys.executable, "manage.py", "reconcile", "--channel", channel,
                         "--date", day.isoformat()],
                        env,
                    )  # fmt: skip
                    base = run_measured(
                        [sys.executable, "manage.py", "reconcile_bench", "--floor", str(path),
                         "--channel", channel],
                        env,
                    )  # fmt: skip
                    run = StatementRun.objects.get(channel=channel, statement_date=day)
                    found = Finding.objects.filter(run=run).count()
                    rows.append((channel, bench, run, found, ours, base))
        out("")
        out(
            f"{'channel':8} {'lines':>10} {'ours s':>8} {'lines/s':>9} {'peak RSS':>9}"
            f" {'floor s':>8} {'lines/s':>9} {'peak RSS':>9} {'floor/ours':>10}  findings"
        )
        for channel, bench, run, found, ours, base in rows:
            out(
                f"{channel:8} {bench.lines:>10,} {ours.seconds:>8.1f}"
                f" {bench.lines / ours.seconds:>9,.0f} {ours.peak_rss_mb:>6.0f} MB"
                f" {base.seconds:>8.1f} {bench.lines / base.seconds:>9,.0f}"
                f" {base.peak_rss_mb:>6.0f} MB {base.seconds / ours.seconds:>10.2f}"
                f"  {found} (expected {bench.expected_findings}), status {run.status}"
            )
        out("")
        out(f"peak RSS of a bare `manage.py check` process: {bare.peak_rss_mb:.0f} MB")
        for channel, _, run, _, _, base in rows:
            phases = ", ".join(
                f"{k} {run.timings[k]:.1f} s"
                for k in ("download", "stage", "match", "total")
                if k in run.timings
            )
            out(f"{channel} time in reconcile (process start-up aside): {phases}")
            out(f"{channel} floor: {base.output.strip()}")


def _raw_lines(path: Path, channel: str) -> gzip.GzipFile | IO[bytes]:
    if channel == "wechat":
        return cast(IO[bytes], gzip.open(path, "rb"))
    archive = zipfile.ZipFile(path)
    detail = next(i for i in archive.infolist() if "汇总" not in i.filename)
    return archive.open(detail)


def floor(path: Path, channel: str) -> str:
    """What no reconciliation can avoid: decompress the file, ``COPY`` its lines raw into a
    table, join them once against the attempts."""
    from django.db import connection

    started = time.perf_counter()
    encoding = "UTF8" if channel == "wechat" else "GBK"
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE floor_lines (line text)")
        # One column per line: a delimiter and a quote that never occur in a statement.
        copy_sql = (
            "COPY floor_lines (line) FROM STDIN WITH (FORMAT csv, DELIMITER E'\\x01',"
            f" QUOTE E'\\x02', ENCODING '{encoding}')"
        )
        with _raw_lines(path, channel) as raw, cursor.copy(copy_sql) as copy:
            while chunk := raw.read(1 << 20):
                copy.write(chunk)
        copied = time.perf_counter() - started
        if channel == "wechat":
            key = "ltrim(split_part(f.line, ',', 7), '`')"
            where = "f.line LIKE '`%%'"
        else:
            key = "split_part(f.line, ',', 2)"
            where = "f.line NOT LIKE '#%%'"
        cursor.execute(
            "SELECT count(*) FROM floor_lines f JOIN payments_paymentattempt a"  # noqa: S608
            f" ON a.out_trade_no = {key} WHERE {where}"
        )
        matched = cursor.fetchone()[0]
    total = time.perf_counter() - started
    return f"COPY {copied:.1f} s, join {total - copied:.1f} s, {matched:,} lines matched"


def _hidden() -> str:
    import argparse

    return argparse.SUPPRESS
