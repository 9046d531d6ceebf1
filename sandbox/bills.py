"""Statements: Alipay's zip of GBK CSVs and WeChat's backtick-prefixed trade bill.

Both list successful payments by payment time and accepted refunds by refund time, cut into days
at midnight China time. Fees follow a flat 0.6 % rate so reconciliation has a fee column to
read; the ledger (``/sandbox/ledger``) never shows fees.

Each channel's statement holds that channel's trades and refunds only. Unlike the real gateways,
the current day's bill is available at once (tests reconcile today's trades); only future dates
are refused, and ``bill_not_ready`` makes any date "not generated yet". ``bill_omit`` and
``bill_amount_mismatch`` make a statement leave out, or misreport by one fen, the payments and
refunds made while they are set (drawn once per payment/refund, so reruns see the same story).

The writers stream: rows go out as they come from an iterable, so the benchmark's
million-line statements (``reconciliation.benchgen``) are written with the same code, and a
sandbox started with ``SANDBOX_BILL_DIR`` serves such pre-written files instead of the ledger's.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import gzip
import hashlib
import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Protocol

from sandbox import timeutil
from sandbox.state import Status, Trade

FEE_RATE_PER_MILLE = 6


@dataclass(frozen=True)
class Period:
    start: dt.date
    end: dt.date  # exclusive
    label: str  # 20240131 (day) or 202401 (month)

    def contains(self, moment: dt.datetime | None) -> bool:
        return moment is not None and self.start <= timeutil.china_date(moment) < self.end


def parse_period(text: str) -> Period:
    """``yyyy-MM-dd`` (a day) or ``yyyy-MM`` (a month). Raises ValueError."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = dt.date.fromisoformat(text)
        return Period(day, day + dt.timedelta(days=1), day.strftime("%Y%m%d"))
    if re.fullmatch(r"\d{4}-\d{2}", text):
        year, month = int(text[:4]), int(text[5:])
        first = dt.date(year, month, 1)
        last_day = calendar.monthrange(year, month)[1]
        return Period(first, first + dt.timedelta(days=last_day), first.strftime("%Y%m"))
    raise ValueError(f"bad bill date {text!r}")


def fee(amount: int) -> int:
    """0.6 %, rounded half up to the fen."""
    return (amount * FEE_RATE_PER_MILLE + 500) // 1000


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


@dataclass(frozen=True)
class BillPayment:
    """One successful payment as a statement shows it (times are aware datetimes)."""

    trade_no: str
    out_trade_no: str
    subject: str
    created_at: dt.datetime
    paid_at: dt.datetime
    amount: int  # fen, as the statement reports it
    currency: str = "CNY"
    buyer: str = ""  # Alipay buyer_logon_id / WeChat openid
    trade_type: str = "NATIVE"
    attach: str = ""


@dataclass(frozen=True)
class BillRefund:
    trade_no: str
    out_trade_no: str
    subject: str
    created_at: dt.datetime  # the trade's
    trade_amount: int
    refunded_at: dt.datetime
    amount: int  # fen, as the statement reports it
    out_refund_no: str
    refund_id: str
    settled: bool = True  # WeChat: SUCCESS, else PROCESSING
    currency: str = "CNY"
    buyer: str = ""
    trade_type: str = "NATIVE"
    attach: str = ""


def ledger_payments(trades: Iterable[Trade], period: Period, channel: str) -> list[BillPayment]:
    """The channel's successful payments in ``period``, as its statement reports them
    (the statement faults ``bill_omit`` and ``bill_amount_mismatch`` applied)."""
    found = []
    for t in trades:
        if t.channel != channel or t.status != Status.PAID or not period.contains(t.paid_at):
            continue
        if t.bill_omitted:
            continue
        assert t.paid_at is not None
        found.append(
            BillPayment(
                trade_no=t.trade_no, out_trade_no=t.out_trade_no, subject=t.subject,
                created_at=t.created_at, paid_at=t.paid_at,
                amount=t.amount + t.bill_amount_delta, currency=t.currency,
                buyer=t.buyer_logon_id if channel == "alipay" else t.buyer_id,
                trade_type=wechat_trade_type(t.kind), attach=t.attach,
            )
        )  # fmt: skip
    return found


def ledger_refunds(trades: Iterable[Trade], period: Period, channel: str) -> list[BillRefund]:
    found = []
    for t in trades:
        if t.channel != channel:
            continue
        for r in t.refunds:
            moment = r.success_at or r.created_at
            if r.bill_omitted or not period.contains(moment):
                continue
            found.append(
                BillRefund(
                    trade_no=t.trade_no, out_trade_no=t.out_trade_no, subject=t.subject,
                    created_at=t.created_at, trade_amount=t.amount, refunded_at=moment,
                    amount=r.amount + r.bill_amount_delta, out_refund_no=r.out_refund_no,
                    refund_id=r.refund_id, settled=r.success_at is not None,
                    currency=t.currency,
                    buyer=t.buyer_logon_id if channel == "alipay" else t.buyer_id,
                    trade_type=wechat_trade_type(t.kind), attach=t.attach,
                )
            )  # fmt: skip
    return found


def _csv(rows: Iterable[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


class _Totals:
    def __init__(self) -> None:
        self.payments = self.refunds = self.received = self.refunded = 0
        self.fees = self.refund_fees = 0


# --- Alipay --------------------------------------------------------------------------------------

ALIPAY_DETAIL_HEADER = [
    "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号",
    "门店名称", "操作员", "终端号", "对方账户", "订单金额（元）", "商家实收（元）",
    "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）", "商家优惠（元）", "券核销金额（元）",
    "券名称", "商家红包消费金额（元）", "卡消费金额（元）", "退款批次号/请求号", "服务费（元）",
    "分润（元）", "备注",
]  # fmt: skip
ALIPAY_SUMMARY_HEADER = [
    "门店编号", "门店名称", "交易订单总笔数", "退款订单总笔数", "订单金额（元）", "商家实收（元）",
    "支付宝优惠（元）", "商家优惠（元）", "卡消费金额（元）", "服务费（元）", "分润（元）",
    "实收净额（元）",
]  # fmt: skip


_RULE = "#" + "-" * 41 + "{}" + "-" * 40 + "\r\n"


def _chinese_time(day: dt.date) -> str:
    return day.strftime("%Y年%m月%d日 00:00:00")


def _gbk_text(raw: IO[bytes]) -> io.TextIOWrapper:
    return io.TextIOWrapper(raw, encoding="gbk", errors="replace", newline="")


def write_alipay_zip(
    out: BinaryIO,
    *,
    seller_id: str,
    period: Period,
    payments: Iterable[BillPayment],
    refunds: Iterable[BillRefund],
) -> None:
    """Stream the zip behind ``bill_download_url`` into ``out``: a detail CSV and a summary CSV,
    GBK-encoded. Rows are written as they come, so a statement of any size takes no memory."""
    now = timeutil.now().astimezone(timeutil.CHINA)
    exported = now.strftime("%Y年%m月%d日 %H:%M:%S")
    span = f"#起始日期：[{_chinese_time(period.start)}]   终止日期：[{_chinese_time(period.end)}]"
    account = f"#账号：[{seller_id}0156]"
    stem = f"{seller_id}0156_{period.label}"
    totals = _Totals()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"{stem}_业务明细.csv", "w", force_zip64=True) as member:
            text = _gbk_text(member)
            text.write(f"#支付宝业务明细查询\r\n{account}\r\n{span}\r\n")
            text.write(_RULE.format("业务明细列表"))
            writer = csv.writer(text, lineterminator="\r\n")
            writer.writerow(ALIPAY_DETAIL_HEADER)
            for p in payments:
                f = fee(p.amount)
                totals.payments += 1
                totals.received += p.amount
                totals.fees += f
                writer.writerow(
                    [p.trade_no, p.out_trade_no, "交易", p.subject,
                     timeutil.alipay_time(p.created_at), timeutil.alipay_time(p.paid_at), "", "",
                     "", "", p.buyer, yuan(p.amount), yuan(p.amount), "0.00", "0.00", "0.00",
                     "0.00", "0.00", "", "0.00", "0.00", "", yuan(-f), "0.00", ""]
                )  # fmt: skip
            for r in refunds:
                f = fee(r.amount)
                totals.refunds += 1
                totals.refunded += r.amount
                totals.refund_fees += f
                writer.writerow(
                    [r.trade_no, r.out_trade_no, "退款", r.subject,
                     timeutil.alipay_time(r.created_at), timeutil.alipay_time(r.refunded_at), "",
                     "", "", "", r.buyer, yuan(r.trade_amount), yuan(-r.amount), "0.00", "0.00",
                     "0.00", "0.00", "0.00", "", "0.00", "0.00", r.out_refund_no, yuan(f),
                     "0.00", ""]
                )  # fmt: skip
            text.write(_RULE.format("业务明细列表结束"))
            text.write(
                f"#交易合计：{totals.payments}笔，商家实收共：{yuan(totals.received)}元，"
                "商家优惠共：0.00元\r\n"
                f"#退款合计：{totals.refunds}笔，商家实收退款共：{yuan(-totals.refunded)}元，"
                "商家优惠退款共：0.00元\r\n"
                f"#导出时间：[{exported}]\r\n"
            )
            text.flush()
            text.detach()
        net_fees = totals.refund_fees - totals.fees
        net = totals.received - totals.refunded
        summary_row = [
            "合计", "", str(totals.payments), str(totals.refunds), yuan(totals.received),
            yuan(net), "0.00", "0.00", "0.00", yuan(net_fees), "0.00", yuan(net + net_fees),
        ]  # fmt: skip
        summary = (
            f"#支付宝业务汇总查询\r\n{account}\r\n{span}\r\n"
            + _RULE.format("业务汇总列表")
            + _csv([ALIPAY_SUMMARY_HEADER, summary_row])
            + _RULE.format("业务汇总列表结束")
            + f"#导出时间：[{exported}]\r\n"
        )
        archive.writestr(f"{stem}_业务明细(汇总).csv", summary.encode("gbk", errors="replace"))


def alipay_zip(*, seller_id: str, period: Period, trades: Sequence[Trade]) -> bytes:
    """The Alipay statement of ``period`` from the ledger: Alipay trades and refunds only."""
    buffer = io.BytesIO()
    write_alipay_zip(
        buffer,
        seller_id=seller_id,
        period=period,
        payments=ledger_payments(trades, period, "alipay"),
        refunds=ledger_refunds(trades, period, "alipay"),
    )
    return buffer.getvalue()


# --- WeChat --------------------------------------------------------------------------------------

WECHAT_ALL_HEADER = [
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号",
    "用户标识", "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额",
    "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态",
    "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额", "费率备注",
]  # fmt: skip
_REFUND_COLUMNS = {"微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型",
                   "退款状态", "申请退款金额"}  # fmt: skip
WECHAT_SUCCESS_HEADER = [c for c in WECHAT_ALL_HEADER if c not in _REFUND_COLUMNS]
WECHAT_SUMMARY_HEADER = [
    "总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额",
    "订单总金额", "申请退款总金额",
]  # fmt: skip
FEE_RATE_TEXT = "0.60%"


def wechat_trade_type(kind: str) -> str:
    return "MWEB" if kind == "H5" else kind


def _backticked(values: Sequence[str]) -> str:
    # Every field is prefixed with a backtick so spreadsheets keep long numbers as text.
    return ",".join("`" + v for v in values) + "\r\n"


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


def write_wechat_tradebill(
    out: Sink,
    *,
    appid: str,
    mchid: str,
    bill_type: str,
    payments: Iterable[BillPayment],
    refunds: Iterable[BillRefund],
) -> None:
    """Stream a trade bill (UTF-8 text) into ``out``, row by row."""
    settled = refunded = fees = totals = count = 0
    header = WECHAT_SUCCESS_HEADER if bill_type == "SUCCESS" else WECHAT_ALL_HEADER
    write = out.write
    write((",".join(header) + "\r\n").encode("utf-8"))
    if bill_type in ("ALL", "SUCCESS"):
        for p in payments:
            f = fee(p.amount)
            settled += p.amount
            totals += p.amount
            fees += f
            count += 1
            row = {
                "交易时间": timeutil.alipay_time(p.paid_at), "公众账号ID": appid,
                "商户号": mchid, "特约商户号": "0", "设备号": "", "微信订单号": p.trade_no,
                "商户订单号": p.out_trade_no, "用户标识": p.buyer, "交易类型": p.trade_type,
                "交易状态": "SUCCESS", "付款银行": "OTHERS", "货币种类": p.currency,
                "应结订单金额": yuan(p.amount), "代金券金额": "0.00", "微信退款单号": "0",
                "商户退款单号": "0", "退款金额": "0.00", "充值券退款金额": "0.00",
                "退款类型": "", "退款状态": "", "商品名称": p.subject, "商户数据包": p.attach,
                "手续费": yuan(f), "费率": FEE_RATE_TEXT, "订单金额": yuan(p.amount),
                "申请退款金额": "0.00", "费率备注": "",
            }  # fmt: skip
            write(_backticked([row[column] for column in header]).encode("utf-8"))
    if bill_type in ("ALL", "REFUND"):
        for r in refunds:
            f = fee(r.amount)
            refunded += r.amount
            fees -= f
            count += 1
            row = {
                "交易时间": timeutil.alipay_time(r.refunded_at), "公众账号ID": appid,
                "商户号": mchid, "特约商户号": "0", "设备号": "", "微信订单号": r.trade_no,
                "商户订单号": r.out_trade_no, "用户标识": r.buyer, "交易类型": r.trade_type,
                "交易状态": "REFUND", "付款银行": "OTHERS", "货币种类": r.currency,
                "应结订单金额": "0.00", "代金券金额": "0.00", "微信退款单号": r.refund_id,
                "商户退款单号": r.out_refund_no, "退款金额": yuan(r.amount),
                "充值券退款金额": "0.00", "退款类型": "ORIGINAL",
                "退款状态": "SUCCESS" if r.settled else "PROCESSING", "商品名称": r.subject,
                "商户数据包": r.attach, "手续费": yuan(-f), "费率": FEE_RATE_TEXT,
                "订单金额": "0.00", "申请退款金额": yuan(r.amount), "费率备注": "",
            }  # fmt: skip
            write(_backticked([row[column] for column in header]).encode("utf-8"))
    write((",".join(WECHAT_SUMMARY_HEADER) + "\r\n").encode("utf-8"))
    summary = [
        str(count), yuan(settled), yuan(refunded), "0.00", yuan(fees), yuan(totals),
        yuan(refunded),
    ]  # fmt: skip
    write(_backticked(summary).encode("utf-8"))


def wechat_tradebill(
    *, appid: str, mchid: str, bill_type: str, period: Period, trades: Sequence[Trade]
) -> bytes:
    """The WeChat trade bill of ``period`` from the ledger: WeChat trades and refunds only."""
    buffer = io.BytesIO()
    write_wechat_tradebill(
        buffer,
        appid=appid,
        mchid=mchid,
        bill_type=bill_type,
        payments=ledger_payments(trades, period, "wechat"),
        refunds=ledger_refunds(trades, period, "wechat"),
    )
    return buffer.getvalue()


class HashingWriter:
    """A write-only binary sink that hashes what passes through (WeChat's SHA1 is over the
    uncompressed bill)."""

    def __init__(self, target: Sink) -> None:
        self.target = target
        self.sha1 = hashlib.sha1()  # noqa: S324 - the protocol's checksum

    def write(self, data: bytes, /) -> object:
        self.sha1.update(data)
        return self.target.write(data)


def write_wechat_gzip(path: str, **bill: Any) -> str:
    """Write a gzipped trade bill to ``path`` (what ``tar_type=GZIP`` downloads); returns the
    SHA1 of the uncompressed bill, as the tradebill answer's ``hash_value``."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as gz:
        sink = HashingWriter(gz)
        write_wechat_tradebill(sink, **bill)
    return sink.sha1.hexdigest()
