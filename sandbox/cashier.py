"""The cashier page a shopper lands on from a QR code or an H5/page redirect.

Self-contained HTML (inline CSS and an inline SVG QR code of the page's own URL), because the
shop's pages may be served with a strict Content-Security-Policy and the sandbox has no assets.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from urllib.parse import parse_qsl, urlencode

import segno

from sandbox import alipay, buyer, timeutil
from sandbox.app import Sandbox
from sandbox.httpio import Request, Response, html_response
from sandbox.state import PayRefused, Status, Trade

CHANNEL_NAMES = {"alipay": "Alipay 支付宝", "wechat": "WeChat Pay 微信支付"}

# The cashier speaks the shopper's language, as the real ones do: Simplified Chinese or English,
# from ?lang= (the switch on the page) or else Accept-Language.
TEXT = {
    "en": {
        "NOTPAY": "Unpaid",
        "PAID": "Paid",
        "CLOSED": "Closed",
        "EXPIRED": "Expired",
        "title": "Sandbox cashier",
        "sandbox": "Oncepay sandbox",
        "pay": "Pay ¥{amount}",
        "return": "Return to merchant",
        "pay_before": "Pay before {time}",
        "order": "Order {number}",
        "own_url": "This page's URL",
        "switch": "中文",
        "not_found": "No {channel} trade {number}.",
    },
    "zh": {
        "NOTPAY": "待支付",
        "PAID": "支付成功",
        "CLOSED": "已关闭",
        "EXPIRED": "已过期",
        "title": "沙箱收银台",
        "sandbox": "Oncepay 沙箱",
        "pay": "支付 ¥{amount}",
        "return": "返回商家",
        "pay_before": "请在 {time} 前支付",
        "order": "订单号 {number}",
        "own_url": "本页地址",
        "switch": "English",
        "not_found": "没有 {channel} 交易 {number}。",
    },
}


def language(req: Request) -> str:
    """ "zh" or "en": ?lang= first, else the first of Accept-Language we speak; English else."""
    asked = req.query_params().get("lang", "")
    if asked in TEXT:
        return asked
    for part in req.header("accept-language").split(","):
        code = part.split(";")[0].strip().lower()
        if code.startswith("zh"):
            return "zh"
        if code.startswith("en"):
            return "en"
    return "en"


def china_time(moment: dt.datetime) -> str:
    """The gateway's clock: Beijing time, with its name."""
    return moment.astimezone(timeutil.CHINA).strftime("%Y-%m-%d %H:%M CST (UTC+08:00)")


_STYLE = """
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;padding:2rem;color:#222}
main{max-width:26rem;margin:auto;background:#fff;border-radius:12px;padding:1.5rem;
box-shadow:0 2px 8px rgba(0,0,0,.08);text-align:center}
.amount{font-size:2.2rem;font-weight:700;margin:.5rem 0}
.status{display:inline-block;padding:.2rem .7rem;border-radius:999px;background:#eee}
.status.PAID{background:#d8f5df;color:#126b2b}.status.CLOSED,.status.EXPIRED{background:#fde2e1}
button{font-size:1.1rem;padding:.7rem 2.5rem;border:0;border-radius:8px;background:#1677ff;
color:#fff;cursor:pointer}.wechat button{background:#07c160}
.qr{margin-top:1rem}.qr svg{width:180px;height:180px}
.muted{color:#777;font-size:.85rem;overflow-wrap:anywhere}
h1{font-size:1.3rem;overflow-wrap:anywhere}.lang{float:right;font-size:.85rem}
@media (max-width:30rem){body{padding:.75rem}main{padding:1rem}}
.message{color:#b42318}
"""


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _redirect_url(req: Request, otn_tail: str) -> tuple[str, str]:
    """WeChat H5 merchants append ``&redirect_url=…`` to h5_url; our h5_url has no query string,
    so that suffix may arrive glued to the path. Accept it there, in the query, or in the form."""
    out_trade_no, glued, tail = otn_tail.partition("&")
    redirect = ""
    if glued:
        redirect = dict(parse_qsl(tail)).get("redirect_url", "")
    params = req.query_params()
    if req.method == "POST" and req.body:
        params |= dict(parse_qsl(req.body.decode("utf-8", "replace")))
    return out_trade_no, params.get("redirect_url", redirect)


def _return_link(sb: Sandbox, trade: Trade, redirect_url: str) -> str:
    if trade.status != Status.PAID:
        return ""
    if trade.channel == "alipay" and trade.return_url:
        separator = "&" if "?" in trade.return_url else "?"
        return trade.return_url + separator + urlencode(alipay.return_params(sb, trade))
    if trade.channel == "wechat" and redirect_url:
        return redirect_url
    return ""


def render(
    sb: Sandbox, trade: Trade, *, redirect_url: str = "", message: str = "", lang: str = "en"
) -> str:
    text = TEXT[lang]
    now = timeutil.now()
    if trade.status == Status.PAID:
        state = "PAID"
    elif trade.status == Status.CLOSED:
        state = "CLOSED"
    elif trade.is_expired(now):
        state = "EXPIRED"
    else:
        state = "NOTPAY"  # includes a close the ignore_close fault swallowed
    own_url = sb.cashier_url(trade.channel, trade.out_trade_no)
    qr_svg = segno.make(own_url, error="m").svg_inline(scale=4, border=2)
    pay_path = escape(own_url + "/pay?" + urlencode({"lang": lang}))
    pay_form = ""
    if state in ("NOTPAY", "EXPIRED"):
        hidden = (
            f'<input type="hidden" name="redirect_url" value="{escape(redirect_url)}">'
            if redirect_url
            else ""
        )
        pay_form = (
            f'<form method="post" action="{pay_path}">{hidden}'
            f'<button type="submit">{escape(text["pay"].format(amount=_yuan(trade.amount)))}'
            "</button></form>"
        )
    link = _return_link(sb, trade, redirect_url)
    back = (
        f'<p><a id="return-link" href="{escape(link)}">{escape(text["return"])}</a></p>'
        if link
        else ""
    )
    note = f'<p class="message">{escape(message)}</p>' if message else ""
    expires = (
        f"<p class='muted' id='expires'>"
        f"{escape(text['pay_before'].format(time=china_time(trade.expires_at)))}</p>"
        if trade.expires_at and state == "NOTPAY"
        else ""
    )
    other = "en" if lang == "zh" else "zh"
    switch_query = {"lang": other} | ({"redirect_url": redirect_url} if redirect_url else {})
    switch = (
        f'<a class="lang" lang="{"zh-Hans" if other == "zh" else "en"}" '
        f'href="{escape(own_url + "?" + urlencode(switch_query))}">{text["switch"]}</a>'
    )
    html_lang = "zh-Hans" if lang == "zh" else "en"
    channel_name = escape(CHANNEL_NAMES[trade.channel])
    return f"""<!doctype html>
<html lang="{html_lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(text["title"])} · {channel_name}</title>
<style>{_STYLE}</style></head>
<body class="{escape(trade.channel)}"><main>
{switch}<p class="muted">{escape(text["sandbox"])} · {channel_name}</p>
<h1>{escape(trade.subject)}</h1>
<div class="amount" id="amount">¥{_yuan(trade.amount)}</div>
<p><span class="status {state}" id="status">{escape(text[state])}</span></p>
{note}{expires}{pay_form}{back}
<div class="qr" title="{escape(text["own_url"])}">{qr_svg}</div>
<p class="muted">{escape(text["order"].format(number=trade.out_trade_no))}</p>
</main></body></html>
"""


def _not_found(channel: str, out_trade_no: str) -> Response:
    return html_response(
        404,
        "<!doctype html><html><head><meta charset='utf-8'><title>Not found</title></head><body>"
        f"<p>No {escape(channel)} trade {escape(out_trade_no)}.</p></body></html>",
    )


def show(sb: Sandbox, req: Request, channel: str, otn_tail: str) -> Response:
    out_trade_no, redirect_url = _redirect_url(req, otn_tail)
    trade = sb.ledger.get(channel, out_trade_no)
    if trade is None:
        return _not_found(channel, out_trade_no)
    with sb.ledger.lock:
        return html_response(200, render(sb, trade, redirect_url=redirect_url, lang=language(req)))


def pay(sb: Sandbox, req: Request, channel: str, otn_tail: str) -> Response:
    out_trade_no, redirect_url = _redirect_url(req, otn_tail)
    try:
        trade = buyer.pay(sb, channel, out_trade_no)
    except PayRefused as refused:
        existing = sb.ledger.get(channel, out_trade_no)
        if existing is None:
            return _not_found(channel, out_trade_no)
        with sb.ledger.lock:
            page = render(
                sb,
                existing,
                redirect_url=redirect_url,
                message=refused.detail,
                lang=language(req),
            )
        return html_response(409, page)
    with sb.ledger.lock:
        return html_response(200, render(sb, trade, redirect_url=redirect_url, lang=language(req)))
