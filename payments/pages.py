"""The shopper's payment pages. Every render checks the order first (seed 002): a paid order
shows the result, a closed one says so, a live attempt is shown again — never a blind new one.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator


from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from orders.models import Order
from orders.selectors import order_get_for_request
from payments.gateways.registry import CHANNELS, get_gateway
from payments.locks import order_lock
from payments.models import LIVE_STATUSES, Channel, Client, GatewayEvent, PaymentAttempt
from payments.services import attempt_query_and_apply, event_record, payment_apply, payment_check_now
from shop.errors import ApplicationError, NotFound

# A live attempt queried this recently is "fresh": a render does not query it again.
FRESH_SECONDS = 5


def _order_or_404(request: HttpRequest, order_id: str) -> Order | HttpResponse:
    try:
        return order_get_for_request(request, order_id)
    except NotFound:
        return render(request, "404.html", status=404)


def _live_attempt(order: Order) -> PaymentAttempt | None:
    return order.attempts.filter(status__in=LIVE_STATUSES).first()


def _refresh_if_stale(order: Order) -> Order:
    """Query the gateway for a live attempt that has not been asked about recently."""
    attempt = _live_attempt(order)
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


@never_cache
@require_GET
def pay_page(request: HttpRequest, order_id: str) -> HttpResponse:
    found = _order_or_404(request, order_id)
    if isinstance(found, HttpResponse):
        return found
    order = _refresh_if_stale(found)
    if order.is_paid:
        return redirect("payment-result", order_id=order.public_id)
    attempt = _live_attempt(order)
    confirming = order.attempts.filter(status="needs_attention").exists()
    returning = attempt is not None and request.GET.get("shown") != attempt.public_id
    return render(
        request,
        "payments/pay.html",
        {
            "order": order,
            "attempt": attempt,
            "ask_already_paid": returning,
            "confirming": confirming,
            "channels": Channel.choices,
            "clients": Client.choices,
            "expired": order.status == "closed" or order.expires_at <= timezone.now(),
        },
    )


@require_POST
def pay_submit(request: HttpRequest, order_id: str) -> HttpResponse:
    found = _order_or_404(request, order_id)
    if isinstance(found, HttpResponse):
        return found
    channel = request.POST.get("channel", "")
    client = request.POST.get("client", "")
    if channel not in CHANNELS or client not in Client.values:
        messages.error(request, "Please choose a payment method.")
        return redirect("payment-page", order_id=found.public_id)
    try:
        result = payment_apply(order_id=found.pk, channel=channel, client=client)
    except ApplicationError as error:
        if error.code == "order_already_paid":
            return redirect("payment-result", order_id=found.public_id)
        messages.warning(request, error.detail)
        return redirect("payment-page", order_id=found.public_id)
    action = result.attempt.action
    if action.get("type") == "redirect":
        return redirect(action["url"])
    return redirect(f"/orders/{found.public_id}/pay?shown={result.attempt.public_id}")


@require_POST
def check_now(request: HttpRequest, order_id: str) -> HttpResponse:
    found = _order_or_404(request, order_id)
    if isinstance(found, HttpResponse):
        return found
    try:
        order = payment_check_now(order_id=found.pk)
    except ApplicationError as error:
        messages.warning(request, error.detail)
        return redirect("payment-page", order_id=found.public_id)
    if order.is_paid:
        return redirect("payment-result", order_id=order.public_id)
    messages.info(request, "We have not received your payment yet.")
    attempt = _live_attempt(order)
    suffix = f"?shown={attempt.public_id}" if attempt else ""
    return redirect(f"/orders/{order.public_id}/pay{suffix}")


@never_cache
@require_GET
def payment_result(request: HttpRequest, order_id: str) -> HttpResponse:
    found = _order_or_404(request, order_id)
    if isinstance(found, HttpResponse):
        return found
    order = _refresh_if_stale(found)
    return render(request, "payments/result.html", {"order": order})


def _status_body(order: Order) -> dict[str, object]:
    live = _live_attempt(order)
    return {
        "id": order.public_id,
        "status": order.status,
        "paid": order.is_paid,
        "confirming": order.attempts.filter(status="needs_attention").exists(),
        "live_attempt": live.public_id if live else None,
        "refunds": [
            {"amount": r.amount, "status": r.status, "reason": r.reason} for r in order.refunds.all()
        ],
    }


@never_cache
@require_GET
def order_status(request: HttpRequest, order_id: str) -> JsonResponse:
    try:
        order = order_get_for_request(request, order_id)
    except NotFound:
        return JsonResponse({"code": "not_found", "detail": "No such order."}, status=404)
    return JsonResponse(_status_body(order))


@never_cache
@require_GET
def order_events(request: HttpRequest, order_id: str) -> HttpResponse:
    """Server-Sent Events: one ``status`` event now and on every change, for up to a minute."""
    try:
        order = order_get_for_request(request, order_id)
    except NotFound:
        return JsonResponse({"code": "not_found", "detail": "No such order."}, status=404)
    from django_redis import get_redis_connection

    from payments.realtime import order_channel

    def stream() -> Iterator[str]:
        pubsub = None
        try:
            pubsub = get_redis_connection("default").pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(order_channel(order.public_id))
        except Exception:
            pubsub = None
        yield "retry: 2000\n\n"
        yield f"event: status\ndata: {json.dumps(_status_body(order))}\n\n"
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=1.0) if pubsub else None
                if pubsub is None:
                    time.sleep(1.0)
                if message:
                    fresh = Order.objects.get(pk=order.pk)
                    yield f"event: status\ndata: {json.dumps(_status_body(fresh))}\n\n"
                else:
                    yield ": keep-alive\n\n"
        finally:
            if pubsub is not None:
                pubsub.close()

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"
    return response


@never_cache
@require_GET
def payment_return(request: HttpRequest, channel: str) -> HttpResponse:
    """Where the gateway sends the browser back. Never marks anything paid by itself: a signed
    return (Alipay) or not, we ask the gateway and let the decision service apply its answer."""
    if channel not in CHANNELS:
        return render(request, "404.html", status=404)
    params = {k: v for k, v in request.GET.items()}
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
    try:
        with order_lock(order.pk, wait=2.0):
            attempt_query_and_apply(attempt=attempt, source="return")
    except ApplicationError:
        pass
    return redirect("payment-result", order_id=order.public_id)


