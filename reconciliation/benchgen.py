"""Generated statements of any size, in each gateway's real format, and the books that match
them — for the reconciliation benchmark (``manage.py reconcile_bench``) and anyone else who needs
a big day (performance work, memory checks).

Everything streams: ``statement_lines`` yields records, ``write_statement`` writes them with the
sandbox's own bill writers (so the format is the one the sandbox serves), ``copy_books`` sends
orders, attempts and refunds to PostgreSQL with ``COPY`` inside one transaction. A day of
``lines`` lines has ``lines // 10`` partial refunds and the rest payments; ``anomalies``
payments of each kind disagree on purpose, so a correct reconciliation reports exactly
``3 * anomalies`` findings: an amount that differs, a capture the statement lacks, and a
statement capture we have no trade for.

Usage::

    from reconciliation.benchgen import BenchDay, copy_books, write_statement
    day = BenchDay(channel="wechat", day=dt.date(2026, 1, 5), lines=1_000_000)
    path = write_statement(day, directory)      # the file a sandbox with SANDBOX_BILL_DIR serves
    copy_books(day)                             # on the current database (a scratch one!)
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import connection, transaction

from sandbox import bills
from sandbox.bills import BillPayment, BillRefund

CHINA = dt.timezone(dt.timedelta(hours=8))
AMOUNT = 5900
REFUND_AMOUNT = 900


@dataclass(frozen=True)
class BenchDay:
    channel: str  # "alipay" | "wechat"
    day: dt.date
    lines: int
    anomalies: int = 10  # per kind
    id_base: int = 0  # row ids start after this (two channels in one database)

    @property
    def refunds(self) -> int:
        return self.lines // 10

    @property
    def payments(self) -> int:
        return self.lines - self.refunds

    @property
    def expected_findings(self) -> int:
        return 3 * self.anomalies if self.payments > 3 * self.anomalies else 0

    def out_trade_no(self, i: int) -> str:
        return f"B{self.channel[0].upper()}{self.day:%y%m%d}{i:012d}"

    def out_refund_no(self, i: int) -> str:
        return f"R{self.channel[0].upper()}{self.day:%y%m%d}{i:012d}"

    def moment(self, i: int) -> dt.datetime:
        """Spread over the day (China time), one payment every so many milliseconds."""
        start = dt.datetime.combine(self.day, dt.time(0, 0, 1), tzinfo=CHINA)
        return start + dt.timedelta(seconds=(i * 86_000) // max(self.payments, 1))

    # Which payments disagree (the last ones, so refunds never touch them).
    def _kind(self, i: int) -> str:
        if not self.expected_findings:
            return ""
        k = self.anomalies
        from_end = self.payments - 1 - i
        if from_end < k:
            return "amount_mismatch"
        if from_end < 2 * k:
            return "missing_at_gateway"  # in our books only
        if from_end < 3 * k:
            return "unknown_trade"  # in the statement only
        return ""


def statement_lines(day: BenchDay) -> tuple[Iterator[BillPayment], Iterator[BillRefund]]:
    """The statement's payments and refunds, generated as they are read."""
    trade_type = "NATIVE" if day.channel == "wechat" else "PRECREATE"

    def payments() -> Iterator[BillPayment]:
        for i in range(day.payments):
            if day._kind(i) == "missing_at_gateway":
                continue
            at = day.moment(i)
            yield BillPayment(
                trade_no=f"4200{i:024d}",
                out_trade_no=day.out_trade_no(i),
                subject="Oncepay order",
                created_at=at - dt.timedelta(seconds=30),
                paid_at=at,
                amount=AMOUNT,
                buyer="o_bench_buyer",
                trade_type=trade_type,
            )

    def refunds() -> Iterator[BillRefund]:
        for i in range(day.refunds):
            at = day.moment(i) + dt.timedelta(seconds=60)
            yield BillRefund(
                trade_no=f"4200{i:024d}",
                out_trade_no=day.out_trade_no(i),
                subject="Oncepay order",
                created_at=day.moment(i) - dt.timedelta(seconds=30),
                trade_amount=AMOUNT,
                refunded_at=at,
                amount=REFUND_AMOUNT,
                out_refund_no=day.out_refund_no(i),
                refund_id=f"50{i:030d}",
                buyer="o_bench_buyer",
                trade_type=trade_type,
            )

    return payments(), refunds()


def statement_filename(day: BenchDay) -> str:
    """The name a sandbox started with ``SANDBOX_BILL_DIR`` looks for (``sandbox.config``)."""
    label = day.day.strftime("%Y%m%d")
    return f"alipay_{label}.zip" if day.channel == "alipay" else f"wechat_{label}_ALL.csv.gz"


def write_statement(
    day: BenchDay, directory: Path, *, seller_id: str = "", appid: str = "", mchid: str = ""
) -> Path:
    """Write the day's statement in its gateway's real format; WeChat's SHA1 goes beside it."""
    path = directory / statement_filename(day)
    payments, refunds = statement_lines(day)
    if day.channel == "alipay":
        with open(path, "wb") as out:
            bills.write_alipay_zip(
                out,
                seller_id=seller_id or "2088000000000000",
                period=bills.parse_period(day.day.isoformat()),
                payments=payments,
                refunds=refunds,
            )
    else:
        digest = bills.write_wechat_gzip(
            str(path),
            appid=appid or "wx0000000000000000",
            mchid=mchid or "1900000000",
            bill_type="ALL",
            payments=payments,
            refunds=refunds,
        )
        (directory / (path.name + ".sha1")).write_text(digest, encoding="ascii")
    return path


def _tsv(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _rows(day: BenchDay) -> tuple[Iterator[str], Iterator[str], Iterator[str]]:
    now = dt.datetime.now(dt.UTC).isoformat()

    def orders() -> Iterator[str]:
        for i in range(day.payments):
            if day._kind(i) == "unknown_trade":
                continue
            n = day.id_base + i + 1
            paid = day.moment(i)
            yield "\t".join(
                _tsv(v)
                for v in (
                    n, f"ord_bench{day.channel[0]}{n:020d}", "bench@example.com", "paid",
                    AMOUNT, "CNY", "", None, paid + dt.timedelta(minutes=30), paid, n, None, "",
                    paid - dt.timedelta(minutes=1), now,
                )
            ) + "\n"  # fmt: skip

    def attempts() -> Iterator[str]:
        for i in range(day.payments):
            kind = day._kind(i)
            if kind == "unknown_trade":
                continue
            n = day.id_base + i + 1
            paid = day.moment(i)
            amount = AMOUNT + 100 if kind == "amount_mismatch" else AMOUNT
            yield "\t".join(
                _tsv(v)
                for v in (
                    n, f"pay_bench{day.channel[0]}{n:020d}", n, day.channel, "pc",
                    day.out_trade_no(i), amount, "CNY", "succeeded", 2, "{}", f"4200{i:024d}",
                    amount, None, 0, None, "", "paid", "", paid, None,
                    paid - dt.timedelta(seconds=30), now,
                )
            ) + "\n"  # fmt: skip

    def refunds() -> Iterator[str]:
        for i in range(day.refunds):
            n = day.id_base + i + 1
            at = day.moment(i) + dt.timedelta(seconds=60)
            yield "\t".join(
                _tsv(v)
                for v in (
                    n, f"ref_bench{day.channel[0]}{n:020d}", n, n, REFUND_AMOUNT, "CNY", "ops",
                    "", day.out_refund_no(i), "succeeded", f"50{i:030d}", None, False, None,
                    None, 1, None, "", at, at - dt.timedelta(seconds=1), now,
                )
            ) + "\n"  # fmt: skip

    return orders(), attempts(), refunds()


_ORDER_COLUMNS = (
    "id, public_id, email, status, total_amount, currency, owner_key, checkout_token,"
    " expires_at, paid_at, paid_attempt_id, closed_at, close_reason, created_at, updated_at"
)
_ATTEMPT_COLUMNS = (
    "id, public_id, order_id, channel, client, out_trade_no, amount, currency, status, version,"
    " action, gateway_trade_no, captured_amount, next_poll_at, poll_step, last_polled_at,"
    " last_error, last_outcome, attention_reason, paid_at, closed_at, created_at, updated_at"
)
_REFUND_COLUMNS = (
    "id, public_id, attempt_id, order_id, amount, currency, reason, note, out_refund_no, status,"
    " gateway_refund_id, requested_by_id, approval_required, approved_by_id, approved_at,"
    " submissions, next_check_at, last_error, succeeded_at, created_at, updated_at"
)
_CHUNK = 1 << 20


def _copy(cursor: object, table: str, columns: str, rows: Iterator[str]) -> None:
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
        buffer: list[str] = []
        size = 0
        for row in rows:
            buffer.append(row)
            size += len(row)
            if size >= _CHUNK:
                copy.write("".join(buffer))
                buffer, size = [], 0
        if buffer:
            copy.write("".join(buffer))


def copy_books(day: BenchDay) -> None:
    """Our side of the day: a paid order, its succeeded attempt and its refunds, with ``COPY``
    in one transaction (the order → attempt foreign keys are checked at commit). Meant for a
    scratch database: ids are ``id_base + 1 …``, and the sequences are moved past them."""
    orders, attempts, refunds = _rows(day)
    with transaction.atomic(), connection.cursor() as cursor:
        _copy(cursor, "orders_order", _ORDER_COLUMNS, orders)
        _copy(cursor, "payments_paymentattempt", _ATTEMPT_COLUMNS, attempts)
        _copy(cursor, "refunds_refund", _REFUND_COLUMNS, refunds)
        for table in ("orders_order", "payments_paymentattempt", "refunds_refund"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"  # noqa: S608 - fixed names
                f" GREATEST((SELECT max(id) FROM {table}), 1))"
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_order, payments_paymentattempt, refunds_refund")


def file_size(path: Path) -> int:
    return os.path.getsize(path)
