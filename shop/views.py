from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST, require_safe

from shop.cart import cart_add, cart_items, cart_set
from shop.errors import ApplicationError, error_body
from shop.health import stack_health
from shop.middleware import wants_json
from shop.models import Product

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CartLine:
    product: Product
    quantity: int

    @property
    def line_total(self) -> int:
        return self.product.price_amount * self.quantity


@dataclass(frozen=True)
class CartSummary:
    lines: list[CartLine]
    total: int
    currency: str


def cart_summary_for(items: dict[str, int]) -> CartSummary:
    """The session cart with today's products and prices (an order snapshots its own)."""
    products = {p.sku: p for p in Product.objects.filter(sku__in=items, is_active=True)}
    lines = [CartLine(products[sku], qty) for sku, qty in items.items() if sku in products]
    currency = lines[0].product.currency if lines else "CNY"
    return CartSummary(lines, sum(line.line_total for line in lines), currency)


@never_cache
@require_GET
def product_list(request: HttpRequest) -> HttpResponse:
    products = Product.objects.filter(is_active=True).order_by("name")
    return render(request, "shop/product_list.html", {"products": products})


@require_POST
def cart_add_view(request: HttpRequest) -> HttpResponse:
    sku = request.POST.get("sku", "")
    if not Product.objects.filter(sku=sku, is_active=True).exists():
        messages.error(request, _("That product is not available."))
        return redirect("product-list")
    cart_add(request.session, sku=sku, quantity=1)
    messages.success(request, _("Added to your cart."))
    return redirect("cart")


@require_POST
def cart_update_view(request: HttpRequest) -> HttpResponse:
    try:
        quantity = int(request.POST.get("quantity", ""))
        cart_set(request.session, sku=request.POST.get("sku", ""), quantity=quantity)
    except (ValueError, ApplicationError):
        messages.error(request, _("Please enter a quantity between 0 and 99."))
    return redirect("cart")


@never_cache
@require_GET
def cart_view(request: HttpRequest) -> HttpResponse:
    return render(
        request, "shop/cart.html", {"cart": cart_summary_for(cart_items(request.session))}
    )


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if wants_json(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return render(request, "404.html", status=404)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    from django.core.exceptions import RequestDataTooBig

    if isinstance(exception, RequestDataTooBig):
        response: HttpResponse = JsonResponse(
            error_body("request_too_large", "The request body is too large."), status=413
        )
        response["Connection"] = "close"
        return response
    if wants_json(request):
        return JsonResponse(error_body("invalid_request", "Bad request."), status=400)
    return HttpResponse("Bad request.", status=400, content_type="text/plain; charset=utf-8")


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """200 only when the database, Redis, the broker, a live Celery worker and a ticking beat
    are all well; 503 naming what is not. Each check has its own entry under ``checks``."""
    from payments.models import AttemptStatus, PaymentAttempt

    report = stack_health()
    body: dict[str, object] = {"failing": report.failing, "checks": report.checks}
    if report.checks["database"]["ok"]:
        # Counted here so monitoring sees it; the admin's "needs attention" filter lists them.
        body["needs_attention"] = PaymentAttempt.objects.filter(
            status=AttemptStatus.NEEDS_ATTENTION
        ).count()
    if report.failing:
        logger.error("health check failing: %s", ", ".join(report.failing))
        return JsonResponse({"status": "unavailable", **body}, status=503)
    return JsonResponse({"status": "ok", **body})
