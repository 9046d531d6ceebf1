from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib import messages
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from shop.cart import cart_add, cart_items, cart_set
from shop.errors import ApplicationError
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
        messages.error(request, "That product is not available.")
        return redirect("product-list")
    cart_add(request.session, sku=sku, quantity=1)
    messages.success(request, "Added to your cart.")
    return redirect("cart")


@require_POST
def cart_update_view(request: HttpRequest) -> HttpResponse:
    try:
        quantity = int(request.POST.get("quantity", ""))
        cart_set(request.session, sku=request.POST.get("sku", ""), quantity=quantity)
    except (ValueError, ApplicationError):
        messages.error(request, "Please enter a quantity between 0 and 99.")
    return redirect("cart")


@never_cache
@require_GET
def cart_view(request: HttpRequest) -> HttpResponse:
    return render(
        request, "shop/cart.html", {"cart": cart_summary_for(cart_items(request.session))}
    )


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database, Redis and the Celery broker answer; 503 naming what does not."""
    from django_redis import get_redis_connection

    from shop.celery import app

    failing: list[str] = []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        failing.append("database")
    try:
        get_redis_connection("default").ping()
    except Exception:
        failing.append("redis")
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception:
        failing.append("broker")
    if failing:
        logger.error("health check failing: %s", ", ".join(failing))
        return JsonResponse({"status": "unavailable", "failing": failing}, status=503)
    from payments.models import AttemptStatus, PaymentAttempt

    # Counted here so monitoring sees it; the admin's "needs attention" filter lists them.
    needs_attention = PaymentAttempt.objects.filter(status=AttemptStatus.NEEDS_ATTENTION).count()
    return JsonResponse({"status": "ok", "needs_attention": needs_attention})
