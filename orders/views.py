"""Shopper pages for checkout and orders. Thin: read, call one service, render."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from orders.models import CloseReason, Order
from orders.selectors import order_get_for_request
from orders.services import OrderItem, order_create
from payments.selectors import status_context
from payments.services import order_cancel_or_expire
from shop.cart import cart_add, cart_clear, cart_items, shopper_key
from shop.errors import ApplicationError, NotFound
from shop.ids import new_secret_token
from shop.models import Product
from shop.views import cart_summary_for

CHECKOUT_TOKENS = "checkout_tokens"
EMAIL_MAX_LENGTH = 254


def _issue_checkout_token(request: HttpRequest) -> str:
    token = new_secret_token()
    tokens = request.session.get(CHECKOUT_TOKENS, [])[-9:]
    request.session[CHECKOUT_TOKENS] = [*tokens, token]
    return token


@never_cache
@require_http_methods(["GET", "POST"])
def checkout(request: HttpRequest) -> HttpResponse:
    items = cart_items(request.session)
    if request.method == "POST":
        token = request.POST.get("checkout_token", "")
        email = request.POST.get("email", "").strip()
        if token not in request.session.get(CHECKOUT_TOKENS, []):
            messages.error(
                request,
                _("This checkout form has expired. Please check your cart and submit again."),
            )
            return redirect("checkout")
        try:
            try:
                if len(email) > EMAIL_MAX_LENGTH:  # the column's size (RFC 5321's path limit)
                    raise ValidationError("too long")
                validate_email(email)
            except ValidationError:
                raise ApplicationError(
                    "invalid_email", "Please enter a valid e-mail address."
                ) from None
            result = order_create(
                items=[OrderItem(sku=s, quantity=q) for s, q in items.items()],
                email=email,
                owner_key=shopper_key(request.session),
                checkout_token=token,
            )
        except ApplicationError as error:
            if error.code == "empty_order":
                # A double submit after the first emptied the cart lands on the first's order.
                existing = Order.objects.filter(checkout_token=token).first()
                if existing is not None:
                    return redirect("order-detail", order_id=existing.public_id)
            messages.error(request, _(error.detail))
            return render(
                request,
                "orders/checkout.html",
                {
                    "token": _issue_checkout_token(request),
                    "email": email,
                    "cart": cart_summary_for(items),
                },
                status=400 if error.status < 500 else error.status,
            )
        cart_clear(request.session)
        return redirect("order-detail", order_id=result.order.public_id)
    if not items:
        return redirect("cart")
    return render(
        request,
        "orders/checkout.html",
        {"token": _issue_checkout_token(request), "email": "", "cart": cart_summary_for(items)},
    )


@never_cache
def order_detail(request: HttpRequest, order_id: str) -> HttpResponse:
    try:
        order = order_get_for_request(request, order_id)
    except NotFound:
        return render(request, "404.html", status=404)
    return render(
        request,
        "orders/order_detail.html",
        {"order": order, "paid_attempt": order.paid_attempt, **status_context(order)},
    )


@require_POST
def order_cancel(request: HttpRequest, order_id: str) -> HttpResponse:
    try:
        order = order_get_for_request(request, order_id)
    except NotFound:
        return render(request, "404.html", status=404)
    if order.status == "unpaid":
        try:
            if not order_cancel_or_expire(order_id=order.pk, reason=CloseReason.CANCELLED):
                messages.warning(
                    request, _("We could not cancel yet: a payment is still being confirmed.")
                )
        except ApplicationError as error:
            messages.warning(request, _(error.detail))
    return redirect("order-detail", order_id=order.public_id)


@require_POST
def order_reorder(request: HttpRequest, order_id: str) -> HttpResponse:
    """ "Order again": put a closed order's items back in the cart (what is still for sale)."""
    try:
        order = order_get_for_request(request, order_id)
    except NotFound:
        return render(request, "404.html", status=404)
    skus = set(Product.objects.filter(is_active=True).values_list("sku", flat=True))
    added = 0
    for line in order.lines.all():
        if line.sku in skus:
            try:
                cart_add(request.session, sku=line.sku, quantity=line.quantity)
                added += 1
            except ApplicationError:
                continue
    if added:
        messages.success(request, _("We put the items of your order back in your cart."))
    else:
        messages.warning(request, _("The items of that order are no longer for sale."))
    return redirect("cart")
