"""The shopper's payment pages. Every render checks the order first (seed 002): a paid order
shows the result, a closed one says so, a live attempt is shown again — never a blind new one.

A live attempt shown right after the shopper asked for it is just shown; arriving on it any other
way (back button, reload, a second tab) first asks "Have you already completed payment?".
When we do not know how a payment ended we say we are confirming it, never that it failed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import segno
from django.contrib import messages
from django.db import connection
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from orders.locks import order_lock
from orders.models import Order
from orders.selectors import order_get_for_request
from payments.apply_pay import payment_apply
from payments.events import event_record
from payments.gateways.registry import CHANNELS, get_gateway
from payments.models import (
    Channel,
    Client,
    GatewayEvent,
    PaymentAttempt,
)
from payments.selectors import (
    ERROR_TEXT,
    PageState,
    live_attempt,
    page_state,
    status_body,
    status_context,
)
from payments.services import attempt_query_and_apply, payment_check_now
from shop.errors import ApplicationError, NotFound

# A live attempt queried this recently is "fresh": a render does not query it again.
FRESH_SECONDS = 5
# One-time nonces in the session: {nonce: [order id, attempt id, forward]} (see _just_shown_url).
JUST_SHOWN = "pay_just_shown"
# {order public id: unix time} of shoppers just back from the gateway: for this long their
# unconfirmed payment is "confirming", not "waiting" (the callback may be on its way).
RETURNED = "pay_returned"
RETURNED_SECONDS = 120

# The clients a browser page offers; "app" belongs to native apps through the API.
PAGE_CLIENTS = [
    (Client.PC.value, gettext_lazy("This computer — scan a QR code with your phone")),
    (Client.WAP.value, gettext_lazy("This phone's browser")),
]
# Phones and tablets that present themselves as mobile; WeChat's own browser included.
_PHONE_AGENT = re.compile(r"Mobi|Android|iPhone|iPod|HarmonyOS|MicroMessenger", re.IGNORECASE)


def is_phone(request: HttpRequest) -> bool:
    """Whether the page is seen on a phone: it then pays in this browser, not by a QR code."""
    return bool(_PHONE_AGENT.search(request.headers.get("User-Agent", "")))


def page_clients(request: HttpRequest) -> list[tuple[str, Any]]:
    """The device choices, the one that fits this device first."""
    return list(reversed(PAGE_CLIENTS)) if is_phone(request) else list(PAGE_CLIENTS)


def _mark_returned(request: HttpRequest, order: Order) -> None:
    returned = dict(list(request.session.get(RETURNED, {}).items())[-4:])
    returned[order.public_id] = time.time()
    request.session[RETURNED] = returned


def _returned(request: HttpRequest, order: Order) -> bool:
    """Whether the shopper came back from the gateway for this order a moment ago."""
    at = request.session.get(RETURNED, {}).get(order.public_id)
    return isinstance(at, int | float) and time.time() - at < RETURNED_SECONDS


def _order_or_404(request: HttpRequest, order_id: str) -> Order | HttpResponse:
    try:
        return order_get_for_request(request, order_id)
    except NotFound:
        return render(request, "404.html", status=404)


def _refresh_if_stale(order: Order) -> Order:
    """Query the gateway for a live attempt that has not been asked about recently."""
    attempt = live_attempt(order)
    if attempt is None or not attempt.action:
        return order
    recent = attempt.last_polled_at and attempt.last_polled_at > timezone.now() - dt.timedelta(
        seconds=FRESH_SECONDS
    )
    if not recent:
        try:
            with order_lock(order.pk, wait=1.0):
                attempt_query_and_apply(attempt=attempt, source="page")
            PaymentAttempt.objects.filter(pk=attempt.pk).update(last_polled_at=timezone.now())
        except ApplicationError:
            pass  # busy: someone else is updating it; show what we know
        order.refresh_from_db()
    return order


def qr_svg(code_url: str) -> str:
    """The QR code as inline SVG, drawn here: no image service, no new window."""
    svg: str = segno.make(code_url, error="m").svg_inline(
        scale=1, border=2, omitsize=True, svgclass="qr-code", title="Payment QR code"
    )
    return svg.replace("<svg ", '<svg role="img" aria-label="Payment QR code" ', 1)


def _redirect_href(request: HttpRequest, attempt: PaymentAttempt) -> str:
    url = str(attempt.action.get("url", ""))
    if not url.startswith(("https://", "http://")):
        return ""  # only a web address becomes a link (never javascript: or the like)
    if attempt.channel == Channel.WECHAT:
        # WeChat H5: the merchant appends where WeChat should send the browser afterwards.
        back = request.build_absolute_uri(reverse("payment-return", args=[attempt.channel]))
        back += "?" + urlencode({"out_trade_no": attempt.out_trade_no})
        url += "&" + urlencode({"redirect_url": back})
    return url


def _just_shown_url(
    request: HttpRequest, order: Order, attempt: PaymentAttempt, *, forward: bool
) -> str:
    """The payment page URL that shows ``attempt`` without asking first — once, in the tab
    that follows it: the one-time ``shown`` nonce is in that tab's URL only, so a reload, the
    back button or another tab of the same session asks again. With ``forward``, a redirect
    attempt sends the window on to the gateway."""
    nonce = secrets.token_urlsafe(9)
    shown = dict(list(request.session.get(JUST_SHOWN, {}).items())[-4:])
    shown[nonce] = [order.public_id, attempt.public_id, forward]
    request.session[JUST_SHOWN] = shown
    return reverse("payment-page", args=[order.public_id]) + "?" + urlencode({"shown": nonce})


def _take_just_shown(request: HttpRequest, order: Order) -> tuple[str, bool]:
    """The attempt the ``shown`` nonce in this URL names, and whether to forward; once only."""
    nonce = request.GET.get("shown", "")
    shown = dict(request.session.get(JUST_SHOWN, {}))
    if not nonce or nonce not in shown:
        return "", False
    value = shown.pop(nonce)
    request.session[JUST_SHOWN] = shown
    try:
        order_id, attempt_id, forward = value
    except (TypeError, ValueError):
        return "", False
    return (str(attempt_id), bool(forward)) if order_id == order.public_id else ("", False)


# --- pages -----------------------------------------------------------------------------------


@never_cache
@require_GET
def pay_page(request: HttpRequest, order_id: str) -> HttpResponse:
    found = _order_or_404(request, order_id)
    if isinstance(found, HttpResponse):
        return found
    order = _refresh_if_stale(found)
    if order.is_paid:
        return redirect("payment-result", order_id=order.public_id)
    attempt = live_attempt(order)
    state = page_state(order, attempt, returned=_returned(request, order))
    just_shown, forward = _take_just_shown(request, order)
    fresh = attempt is not None and just_shown == attempt.public_id
    if state is PageState.CLOSED:
        attempt = None  # past its deadline: nothing more to pay here, whatever is still open
    phone = is_phone(request)
    # While a payment is open or unconfirmed, the other ways are folded and preselect nothing:
    # choosing one closes the payment shown, so it must be the shopper's choice, not ours.
    folded = attempt is not None or state is PageState.CONFIRMING
    context: dict[str, Any] = {
        "order": order,
        "attempt": attempt,
        "ask_already_paid": attempt is not None and not fresh,
        # Sent here by the shopper's own "Pay" just now: go on to the gateway in this window.
        "autoforward": fresh and forward,
        "phone": phone,
        "channels": Channel.choices,
        "clients": page_clients(request),
        "folded": folded,
        "default_channel": "" if folded else Channel.ALIPAY.value,
        "default_client": "" if folded else (Client.WAP if phone else Client.PC),
        **status_context(order, returned=_returned(request, order)),
    }
    if attempt is not None and attempt.action.get("type") == "qr":
        context["qr_svg"] = qr_svg(str(attempt.action.get("code_url", "")))
        context["code_url"] = attempt.action.get("code_url", "")
    elif attempt is not None and attempt.action.get("type") == "redirect":
        context["redirect_href"] = _redirect_href(request, attempt)
    return render(request, "payments/pay.html", context)


@require_POST
def pay_submit(request: HttpRequest, order_id: str) -> HttpResponse:
    found = _order_or_404(request, order_id)
    if isinstance(found, HttpResponse):
        return found
    channel = request.POST.get("channel", "")
    client = request.POST.get("client", "")
    if channel not in CHANNELS or client not in {value for value, _label in PAGE_CLIENTS}:
        messages.error(request, _("Please choose a payment method and a device."))
        return redirect("payment-page", order_id=found.public_id)
    try:
        result = payment_apply(order_id=found.pk, channel=channel, client=client)
    except ApplicationError as error:
        if error.code == "order_already_paid":
            return redirect("payment-result", order_id=found.public_id)
        messages.warning(request, ERROR_TEXT.get(error.code) or _(error.detail))
        return redirect("payment-page", order_id=found.public_id)
    # Back to the payment page, which shows the QR code or forwards this window to the gateway:
    # the form never posts to another origin (CSP form-action 'self').
    return redirect(_just_shown_url(request, found, result.attempt, forward=True))


@require_POST
def check_now(request: HttpRequest, order_id: str) -> HttpResponse:
    found = _order_or_404(request, order_id)
    if isinstance(found, HttpResponse):
        return found
    try:
        order = payment_check_now(order_id=found.pk)
    except ApplicationError as error:
        messages.warning(request, ERROR_TEXT.get(error.code) or _(error.detail))
        return redirect("payment-page", order_id=found.public_id)
    if order.is_paid:
        return redirect("payment-result", order_id=order.public_id)
    attempt = live_attempt(order)
    if attempt is None:
        return redirect("payment-page", order_id=order.public_id)
    messages.info(
        request,
        _(
            "We have not received your payment yet. If you have just paid, it can take a few "
            "seconds to arrive — this page updates by itself, so please don't pay again."
        ),
    )
    return redirect(_just_shown_url(request, order, attempt, forward=False))


@never_cache
@require_GET
def payment_result(request: HttpRequest, order_id: str) -> HttpResponse:
    found = _order_or_404(request, order_id)
    if isinstance(found, HttpResponse):
        return found
    order = _refresh_if_stale(found)
    paid_attempt = order.paid_attempt if order.is_paid else None
    return render(
        request,
        "payments/result.html",
        {
            "order": order,
            "paid_attempt": paid_attempt,
            **status_context(order, returned=_returned(request, order)),
        },
    )


@never_cache
@require_GET
def order_status(request: HttpRequest, order_id: str) -> JsonResponse:
    try:
        order = order_get_for_request(request, order_id)
    except NotFound:
        return JsonResponse({"code": "not_found", "detail": "No such order."}, status=404)
    return JsonResponse(status_body(order, returned=_returned(request, order)))


@never_cache
@require_GET
def order_events(request: HttpRequest, order_id: str) -> HttpResponseBase:
    """Server-Sent Events: the order's ``status`` now and on every change while a stream slot is
    free (``payments.realtime``), else once — never a web thread per open page."""
    try:
        order = order_get_for_request(request, order_id)
    except NotFound:
        return JsonResponse({"code": "not_found", "detail": "No such order."}, status=404)
    from payments.realtime import order_event_stream

    returned = _returned(request, order)
    # The stream outlives the request's language activation: say each update in its language.
    language = translation.get_language()

    def current() -> str:
        with translation.override(language):
            status = status_body(Order.objects.get(pk=order.pk), returned=returned)
        body = json.dumps(status)
        # A held stream stays open for a while: hold no database connection while idle.
        if not connection.in_atomic_block:
            connection.close()
        return f"event: status\ndata: {body}\n\n"

    return order_event_stream(order.public_id, current)


@never_cache
@require_GET
def payment_return(request: HttpRequest, channel: str) -> HttpResponse:
    """Where the gateway sends the browser back. Never marks anything paid by itself: a signed
    return (Alipay) or not, we ask the gateway and let the decision service apply its answer."""
    if channel not in CHANNELS:
        return render(request, "404.html", status=404)
    params = {key: request.GET.get(key, "") for key in request.GET}
    info = get_gateway(channel).verify_return(params)
    event_record(
        channel=channel,
        kind=GatewayEvent.Kind.RETURN,
        out_trade_no=info.out_trade_no,
        verified=info.verified,
        body=json.dumps({k: v for k, v in params.items() if k != "sign"})[:5000],
    )
    attempt = PaymentAttempt.objects.filter(channel=channel, out_trade_no=info.out_trade_no).first()
    if attempt is None:
        return render(request, "404.html", status=404)
    order = attempt.order
    try:
        order_get_for_request(request, order.public_id)
    except NotFound:
        return render(request, "404.html", status=404)
    _mark_returned(request, order)
    try:
        with order_lock(order.pk, wait=2.0):
            attempt_query_and_apply(attempt=attempt, source="return")
    except ApplicationError:
        pass
    return redirect("payment-result", order_id=order.public_id)
