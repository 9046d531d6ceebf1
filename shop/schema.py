"""What the OpenAPI schema (``/api/schema/``) says the API answers: response shapes, error
answers, the bearer scheme of order tokens and the Idempotency-Key header.

The output serializers here describe bodies built by the ``*_out`` functions; they are the
schema's, never used to render. ``tests/security/test_schema_fuzz.py`` holds the two together.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication


class OrderTokenAuthentication(BaseAuthentication):
    """Names the order's bearer token in the schema. Access itself is decided per order by
    ``orders.access.can_access_order`` (token or the owner's session), so this authenticates
    nobody."""

    def authenticate(self, request: Any) -> None:
        return None

    def authenticate_header(self, request: Any) -> str:
        return "Bearer"


class OrderTokenScheme(OpenApiAuthenticationExtension):
    target_class = "shop.schema.OrderTokenAuthentication"
    name = "orderToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The order's access_token, as returned when the order was created.",
        }


class ThrottledBasicScheme(OpenApiAuthenticationExtension):
    target_class = "refunds.permissions.ThrottledBasicAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "basic"}


class ErrorOut(serializers.Serializer):
    code = serializers.CharField(help_text="A stable snake_case code to branch on.")
    detail = serializers.CharField(help_text="A human sentence.")


class MoneyOut(serializers.Serializer):
    amount = serializers.IntegerField(help_text="Minor units (fen, cents).")
    currency = serializers.CharField(min_length=3, max_length=3)


class ProductOut(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    price = MoneyOut()
    stock = serializers.IntegerField()


class OrderLineOut(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = MoneyOut()
    line_total = MoneyOut()


class AttemptOut(serializers.Serializer):
    id = serializers.CharField()
    channel = serializers.CharField()
    client = serializers.CharField()
    status = serializers.CharField()
    out_trade_no = serializers.CharField()
    amount = MoneyOut()
    action = serializers.DictField(
        allow_null=True,
        help_text='{"type": "qr", "code_url"}, {"type": "redirect", "url"} or '
        '{"type": "app", "params"}',
    )
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)


class RefundOut(serializers.Serializer):
    id = serializers.CharField()
    amount = MoneyOut()
    reason = serializers.CharField()
    status = serializers.CharField()
    out_refund_no = serializers.CharField()
    payment = serializers.CharField(help_text="The id of the refunded payment attempt.")
    created_at = serializers.DateTimeField()


class StaffRefundOut(RefundOut):
    approval_required = serializers.BooleanField(
        help_text="True while the refund waits for a second staff member's approval."
    )


class OrderOut(serializers.Serializer):
    id = serializers.CharField()
    status = serializers.CharField()
    email = serializers.EmailField()
    total = MoneyOut()
    lines = OrderLineOut(many=True)
    expires_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    close_reason = serializers.CharField(allow_null=True)
    payments = AttemptOut(many=True)
    refunds = RefundOut(many=True)


class CreatedOrderOut(OrderOut):
    access_token = serializers.CharField(help_text="Bearer token for this order's endpoints.")


_ERROR_TEXT = {
    400: "Malformed JSON or invalid fields (codes such as invalid_request, malformed_json, "
    "unknown_sku).",
    401: "Missing or wrong credentials.",
    403: "Not allowed (permission_denied, including a session call without its CSRF token).",
    404: "No such order, or not yours (a 403 would tell that it exists).",
    405: "Method not allowed.",
    409: "Conflict with the order's state (out_of_stock, order_already_paid, order_closed, "
    "refund_exceeds_capture, order_not_paid).",
    413: "Request body over 64 KiB.",
    415: "Only application/json is accepted.",
    422: "Idempotency-Key reused with another body (idempotency_key_reused).",
    429: "Rate limited (rate_limited); see Retry-After.",
    503: (
        "payment_in_progress: a previous payment could not be closed at its gateway yet, or a"
        " newer choice of channel or client for this order replaced this one while it waited"
        " (the newer one is being opened). Retry, or show the order's live attempt."
    ),
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error answers of an operation, each ``{"code", "detail"}``."""
    return {s: OpenApiResponse(response=ErrorOut, description=_ERROR_TEXT[s]) for s in statuses}


# Every JSON endpoint may answer these: a body it cannot read, a client over its rate.
COMMON_ERRORS = (400, 405, 413, 415, 429)

IDEMPOTENCY_KEY = OpenApiParameter(
    name="Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    type={"type": "string", "minLength": 1, "maxLength": 255},
    description="Same key and same body again: the same order. Same key, other body: 422. "
    "Scoped to the client's address.",
)
