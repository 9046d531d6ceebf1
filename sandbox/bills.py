"""Statements: Alipay's zip of GBK CSVs and WeChat's backtick-prefixed trade bill.

Both list successful payments by payment time and accepted refunds by refund time, cut into days
at midnight China time. Fees follow a flat 0.6 % rate so reconciliation has a fee column to
read; the ledger (``/sandbox/ledger``) never shows fees.

Unlike the real gateways, the current day's bill is available at once (tests reconcile today's
trades); only future dates are refused.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sandbox import timeutil
from sandbox.state import Refund, Status, Trade

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


def _payments(trades: Iterable[Trade], period: Period) -> list[Trade]:
    return [t for t in trades if t.status == Status.PAID and period.contains(t.paid_at)]


def _refunds(trades: Iterable[Trade], period: Period) -> list[tuple[Trade, Refund]]:
    return [
        (t, r) for t in trades for r in t.refunds if period.contains(r.success_at or r.created_at)
    ]


def _csv(rows: Iterable[Sequence[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue()


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


def alipay_zip(*, seller_id: str, period: Period, trades: Sequence[Trade]) -> bytes:
    """The zip behind ``bill_download_url``: a detail CSV and a summary CSV, GBK-encoded."""
    now = timeutil.now().astimezone(timeutil.CHINA)
    exported = now.strftime("%Y年%m月%d日 %H:%M:%S")
    span = f"#起始日期：[{_chinese_time(period.start)}]   终止日期：[{_chinese_time(period.end)}]"
    account = f"#账号：[{seller_id}0156]"

    detail_rows: list[list[str]] = []
    received = fees = refunded = refund_fees = 0
    payments = _payments(trades, period)
    for t in payments:
        assert t.paid_at is not None
        f = fee(t.amount)
        received += t.amount
        fees += f
        detail_rows.append(
            [t.trade_no, t.out_trade_no, "交易", t.subject, timeutil.alipay_time(t.created_at),
             timeutil.alipay_time(t.paid_at), "", "", "", "", t.buyer_logon_id, yuan(t.amount),
             yuan(t.amount), "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00", "0.00", "",
             yuan(-f), "0.00", ""]
        )  # fmt: skip
    refunds = _refunds(trades, period)
    for t, r in refunds:
        f = fee(r.amount)
        refunded += r.amount
        refund_fees += f
        detail_rows.append(
            [t.trade_no, t.out_trade_no, "退款", t.subject, timeutil.alipay_time(t.created_at),
             timeutil.alipay_time(r.success_at or r.created_at), "", "", "", "",
             t.buyer_logon_id, yuan(t.amount), yuan(-r.amount), "0.00", "0.00", "0.00", "0.00",
             "0.00", "", "0.00", "0.00", r.out_refund_no, yuan(f), "0.00", ""]
        )  # fmt: skip
    detail = (
        "#支付宝业务明细查询\r\n"
        f"{account}\r\n{span}\r\n"
        + _RULE.format("业务明细列表")
        + _csv([ALIPAY_DETAIL_HEADER, *detail_rows])
        + _RULE.format("业务明细列表结束")
        + f"#交易合计：{len(payments)}笔，商家实收共：{yuan(received)}元，商家优惠共：0.00元\r\n"
        f"#退款合计：{len(refunds)}笔，商家实收退款共：{yuan(-refunded)}元，商家优惠退款共：0.00元\r\n"
        f"#导出时间：[{exported}]\r\n"
    )
    net_fees = refund_fees - fees
    summary = (
        "#支付宝业务汇总查询\r\n"
        f"{account}\r\n{span}\r\n"
        + _RULE.format("业务汇总列表")
        + _csv(
            [
                ALIPAY_SUMMARY_HEADER,
                [
                    "合计",
                    "",
                    str(len(payments)),
                    str(len(refunds)),
                    yuan(received),
                    yuan(received - refunded),
                    "0.00",
                    "0.00",
                    "0.00",
                    yuan(net_fees),
                    "0.00",
                    yuan(received - refunded + net_fees),
                ],
            ]
        )
        + _RULE.format("业务汇总列表结束")
        + f"#导出时间：[{exported}]\r\n"
    )
    stem = f"{seller_id}0156_{period.label}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{stem}_业务明细.csv", detail.encode("gbk", errors="replace"))
        archive.writestr(f"{stem}_业务明细(汇总).csv", summary.encode("gbk", errors="replace"))
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


def wechat_tradebill(
    *, appid: str, mchid: str, bill_type: str, period: Period, trades: Sequence[Trade]
) -> bytes:
    rows: list[dict[str, str]] = []
    settled = refunded = fees = totals = 0
    if bill_type in ("ALL", "SUCCESS"):
        for t in _payments(trades, period):
            assert t.paid_at is not None
            f = fee(t.amount)
            settled += t.amount
            totals += t.amount
            fees += f
            rows.append(
                {
                    "交易时间": timeutil.alipay_time(t.paid_at), "公众账号ID": appid,
                    "商户号": mchid, "特约商户号": "0", "设备号": "", "微信订单号": t.trade_no,
                    "商户订单号": t.out_trade_no, "用户标识": t.buyer_id,
                    "交易类型": wechat_trade_type(t.kind), "交易状态": "SUCCESS",
                    "付款银行": "OTHERS", "货币种类": t.currency, "应结订单金额": yuan(t.amount),
                    "代金券金额": "0.00", "微信退款单号": "0", "商户退款单号": "0",
                    "退款金额": "0.00", "充值券退款金额": "0.00", "退款类型": "", "退款状态": "",
                    "商品名称": t.subject, "商户数据包": t.attach, "手续费": yuan(f),
                    "费率": FEE_RATE_TEXT, "订单金额": yuan(t.amount), "申请退款金额": "0.00",
                    "费率备注": "",
                }
            )  # fmt: skip
    if bill_type in ("ALL", "REFUND"):
        for t, r in _refunds(trades, period):
            f = fee(r.amount)
            refunded += r.amount
            fees -= f
            rows.append(
                {
                    "交易时间": timeutil.alipay_time(r.success_at or r.created_at),
                    "公众账号ID": appid, "商户号": mchid, "特约商户号": "0", "设备号": "",
                    "微信订单号": t.trade_no, "商户订单号": t.out_trade_no,
                    "用户标识": t.buyer_id, "交易类型": wechat_trade_type(t.kind),
                    "交易状态": "REFUND", "付款银行": "OTHERS", "货币种类": t.currency,
                    "应结订单金额": "0.00", "代金券金额": "0.00", "微信退款单号": r.refund_id,
                    "商户退款单号": r.out_refund_no, "退款金额": yuan(r.amount),
                    "充值券退款金额": "0.00", "退款类型": "ORIGINAL",
                    "退款状态": "SUCCESS" if r.success_at else "PROCESSING",
                    "商品名称": t.subject, "商户数据包": t.attach, "手续费": yuan(-f),
                    "费率": FEE_RATE_TEXT, "订单金额": "0.00", "申请退款金额": yuan(r.amount),
                    "费率备注": "",
                }
            )  # fmt: skip
    header = WECHAT_SUCCESS_HEADER if bill_type == "SUCCESS" else WECHAT_ALL_HEADER
    lines = [",".join(header) + "\r\n"]
    lines += [_backticked([row[column] for column in header]) for row in rows]
    lines.append(",".join(WECHAT_SUMMARY_HEADER) + "\r\n")
    lines.append(
        _backticked(
            [
                str(len(rows)),
                yuan(settled),
                yuan(refunded),
                "0.00",
                yuan(fees),
                yuan(totals),
                yuan(refunded),
            ]
        )
    )
    return "".join(lines).encode("utf-8")
