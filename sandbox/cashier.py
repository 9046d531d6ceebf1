"""The cashier page a shopper lands on from a QR code or an H5/page redirect.

Self-contained HTML (inline CSS and an inline SVG QR code of the page's own URL), because the
shop's pages may be served with a strict Content-Security-Policy and the sandbox has no assets.
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qsl, urlencode

import segno

from sandbox import alipay, buyer, timeutil
from sandbox.app import Sandbox
from sandbox.httpio import Request, Response, html_response
from sandbox.state import PayRefused, Status, Trade

CHANNEL_NAMES = {"alipay": "Alipay 支付宝", "wechat": "WeChat Pay 微信支付"}
STATUS_LABELS = {
    "NOTPAY": "Unpaid",
    "PAID": "Paid",
    "CLOSED": "Closed",
    "EXPIRED": "Expired",
}

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
.muted{color:#777;font-size:.85rem;word-break:break-all}
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


def render(sb: Sandbox, trade: Trade, *, redirect_url: str = "", message: str = "") -> str:
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
    pay_path = escape(own_url + "/pay")
    pay_form = ""
    if state in ("NOTPAY", "EXPIRED"):
        hidden = (
            f'<input type="hidden" name="redirect_url" value="{escape(redirect_url)}">'
            if redirect_url
            else ""
        )
        pay_form = (
            f'<form method="post" action="{pay_path}">{hidden}'
            f'<button type="submit">Pay ¥{_yuan(trade.amount)}</button></form>'
        )
    link = _return_link(sb, trade, redirect_url)
    back = (
        f'<p><a id="return-link" href="{escape(link)}">Return to merchant</a></p>' if link else ""
    )
    note = f'<p class="message">{escape(message)}</p>' if message else ""
    expires = (
        f"<p class='muted'>Pay before {escape(timeutil.rfc3339(trade.expires_at))}</p>"
        if trade.expires_at and state == "NOTPAY"
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sandbox cashier · {escape(CHANNEL_NAMES[trade.channel])}</title>
<style>{_STYLE}</style></head>
<body class="{escape(trade.channel)}"><main>
<p class="muted">Oncepay sandbox · {escape(CHANNEL_NAMES[trade.channel])}</p>
<h1>{escape(trade.subject)}</h1>
<div class="amount" id="amount">¥{_yuan(trade.amount)}</div>
<p><span class="status {state}" id="status">{STATUS_LABELS[state]}</span></p>
{note}{expires}{pay_form}{back}
<div class="qr" title="This page's URL">{qr_svg}</div>
<p class="muted">Order {escape(trade.out_trade_no)}</p>
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
        return html_response(200, render(sb, trade, redirect_url=redirect_url))


def pay(sb: Sandbox, req: Request, channel: str, otn_tail: str) -> Response:
    out_trade_no, redirect_url = _redirect_url(req, otn_tail)
    try:
        trade = buyer.pay(sb, channel, out_trade_no)
    except PayRefused as refused:
        existing = sb.ledger.get(channel, out_trade_no)
        if existing is None:
            return _not_found(channel, out_trade_no)
        with sb.ledger.lock:
            page = render(sb, existing, redirect_url=redirect_url, message=refused.detail)
        return html_response(409, page)
    with sb.ledger.lock:
        return html_response(200, render(sb, trade, redirect_url=redirect_url))
