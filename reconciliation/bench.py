"""The reconciliation benchmark: reconcile a generated day of statement lines per channel, in
each gateway's real format, next to a floor measured in the same run. Used by
``manage.py reconcile_bench`` (which makes a scratch database for it) and by
``manage.py bench reconciliation`` (which already runs on one).

For each channel it writes the statement (``reconciliation.benchgen``), ``COPY``s the matching
books into the current database, starts a sandbox that serves the file (``SANDBOX_BILL_DIR``),
and runs ``manage.py reconcile`` as its own process — download over HTTP, digest, parse, stage,
match — measuring its wall time and peak RSS (``wait4``). The floor is another process that
only decompresses the same file, ``COPY``s its raw lines into a table and runs one join against
the attempts (``floor``).
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

import psycopg
import requests
from django.conf import settings
from django.db import connection
from psycopg import sql

CHANNELS = ("alipay", "wechat")
# The databases this benchmark may fill: its own scratch ones, and those of ``manage.py bench``.
SCRATCH_PREFIXES = ("oncepay_rbench_", "oncepay_bench_")

Write = Callable[[str], None]


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    output: str


@dataclass
class ChannelResult:
    """One channel's reconciliation next to its floor."""

    channel: str
    lines: int
    ours: Measured
    floor: Measured
    findings: int
    expected_findings: int
    status: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def as_expected(self) -> bool:
        return self.findings == self.expected_findings and self.status == "done"


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
    name = f"{SCRATCH_PREFIXES[0]}{secrets.token_hex(4)}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"postgres://{db['USER']}{password}@{server['host']}:{server['port']}/{name}"
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


def reconcile_bench(*, lines: int, channels: Sequence[str], write: Write) -> list[ChannelResult]:
    """Generate, serve and reconcile ``lines`` statement lines per channel on the current
    database, which must be a scratch one (the books are ``COPY``-ed into it); returns the
    figures. Child processes inherit this process's environment (its ``DATABASE_URL``)."""
    from reconciliation.benchgen import BenchDay, copy_books, write_statement
    from reconciliation.models import Finding, StatementRun
    from reconciliation.services import china_today

    name = str(connection.settings_dict["NAME"])
    if not name.startswith(SCRATCH_PREFIXES):
        raise RuntimeError(f"the reconciliation benchmark fills a scratch database, not {name!r}")
    day = china_today() - dt.timedelta(days=1)
    gateways = settings.PAYMENT_GATEWAYS
    results = []
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
            write(
                f"-- {channel}: statement of {lines:,} lines, {path.stat().st_size / 2**20:.1f} MB"
                f" written in {generated:.1f} s; books COPY-ed in"
                f" {time.perf_counter() - started:.1f} s (setup, not measured)"
            )
            days[channel] = (bench, path)
        env = {**os.environ, "LOG_LEVEL": "WARNING"}
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
                results.append(
                    ChannelResult(
                        channel=channel,
                        lines=bench.lines,
                        ours=ours,
                        floor=base,
                        findings=Finding.objects.filter(run=run).count(),
                        expected_findings=bench.expected_findings,
                        status=run.status,
                        timings=dict(run.timings),
                    )
                )
    return results


def bare_process_rss_mb() -> float:
    """Peak RSS of a bare ``manage.py check``: what any Django process costs before work."""
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    return run_measured([sys.executable, "manage.py", "check", "-v0"], env).peak_rss_mb


def _raw_lines(path: Path, channel: str) -> gzip.GzipFile | IO[bytes]:
    if channel == "wechat":
        return cast(IO[bytes], gzip.open(path, "rb"))
    archive = zipfile.ZipFile(path)
    detail = next(i for i in archive.infolist() if "汇总" not in i.filename)
    return archive.open(detail)


def floor(path: Path, channel: str) -> str:
    """What no reconciliation can avoid: decompress the file, ``COPY`` its lines raw into a
    table, join them once against the attempts."""
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
