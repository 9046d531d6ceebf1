"""Order API views: thin — validate, call one service, present."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.http import HttpRequest
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders import dedupe
from orders.models import CloseReason, Order
from orders.selectors import order_get_for_api
from orders.serializers import OrderCreateInput, order_out
from orders.services import OrderItem, order_create, request_digest
from payments.services import order_already_paid, order_cancel_or_expire
from shop.clientip import client_address
from shop.errors import ApplicationError
from shop.schema import (
    COMMON_ERRORS,
    IDEMPOTENCY_KEY,
    CreatedOrderOut,
    OrderOut,
    OrderTokenAuthentication,
    errors,
)


def _scoped_key(request: HttpRequest, key: str) -> str:
    """An Idempotency-Key belongs to the client that sent it (its address, as the trusted
    proxies report it): another client sending the same key and body gets an order of its own,
    never the first client's order and its access token."""
    scope = hmac.new(
        settings.SECRET_KEY.encode(), f"idem-scope:{client_address(request)}".encode(), "sha256"
    ).hexdigest()[:16]
    if len(key) + len(scope) + 1 > 255:
        key = hashlib.sha256(key.encode()).hexdigest()
    return f"{scope}:{key}"


class OrderCreateApi(APIView):
    throttle_scope = "order_create"

    @extend_schema(
        request=OrderCreateInput,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: CreatedOrderOut,
            200: CreatedOrderOut,
            **errors(*COMMON_ERRORS, 409, 422),
        },
    )
    def post(self, request: Request) -> Response:
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key.strip()) <= 255):
            raise ApplicationError(
                "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 characters."
            )
        data = OrderCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        items = [
            OrderItem(sku=i["sku"], quantity=i["quantity"]) for i in data.validated_data["items"]
        ]
        email = data.validated_data["email"]
        digest = request_digest(request.data)

        def create() -> Order:
            return order_create(items=items, email=email, idempotency_key=key, digest=digest).order

        if key is not None:
            result = order_create(
                items=items,
                email=email,
                idempotency_key=_scoped_key(request, key.strip()),
                digest=digest,
            )
            order, created = result.order, result.created
        else:
            order, created = dedupe.with_content_dedupe(
                request_digest({"body": request.data, "client": client_address(request)}), create
            )
        return Response(order_out(order, with_token=True), status=201 if created else 200)


class OrderDetailApi(APIView):
    throttle_scope = "status"
    authentication_classes = [OrderTokenAuthentication]

    @extend_schema(responses={200: OrderOut, **errors(*COMMON_ERRORS, 404)})
    def get(self, request: Request, order_id: str) -> Response:
        return Response(order_out(order_get_for_api(request, order_id)))


class OrderCancelApi(APIView):
    throttle_scope = "apply_pay"
    authentication_classes = [OrderTokenAuthentication]

    @extend_schema(
        request=None, responses={200: OrderOut, **errors(*COMMON_ERRORS, 403, 404, 409, 503)}
    )
    def post(self, request: Request, order_id: str) -> Response:
        order = order_get_for_api(request, order_id)
        if order.is_paid:
            raise order_already_paid()
        if order.status == "unpaid" and not order_cancel_or_expire(
            order_id=order.pk, reason=CloseReason.CANCELLED
        ):
            order.refresh_from_db()
            if order.is_paid:
                raise order_already_paid()
            raise ApplicationError(
                "payment_in_progress",
                "A payment for this order could not be closed yet. Try again shortly.",
                status=503,
            )
        order.refresh_from_db()
        return Response(order_out(order))
