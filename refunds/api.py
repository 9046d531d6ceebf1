"""Staff refund API (the ``refunds.request_refund`` permission): the admin's service."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders.models import Order
from orders.serializers import refund_out
from refunds.models import RefundReason
from refunds.permissions import CanRequestRefund, ThrottledBasicAuthentication
from refunds.services import refund_request
from shop.errors import NotFound
from shop.schema import COMMON_ERRORS, StaffRefundOut, errors


class RefundRequestInput(serializers.Serializer):
    amount = serializers.IntegerField(min_value=1, required=False)
    reason = serializers.ChoiceField(
        choices=[RefundReason.CUSTOMER_REQUEST, RefundReason.OPS], default=RefundReason.OPS
    )
    note = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class OrderRefundApi(APIView):
    # Session auth enforces CSRF; Basic auth stops answering after too many failed passwords.
    authentication_classes = [SessionAuthentication, ThrottledBasicAuthentication]
    permission_classes = [CanRequestRefund]

    @extend_schema(
        request=RefundRequestInput,
        responses={201: StaffRefundOut, **errors(*COMMON_ERRORS, 401, 403, 404, 409)},
    )
    def post(self, request: Request, order_id: str) -> Response:
        order = Order.objects.filter(public_id=order_id).first()
        if order is None:
            raise NotFound("No such order.")
        data = RefundRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        refund = refund_request(
            order_id=order.pk,
            amount=data.validated_data.get("amount", order.total_amount),
            reason=data.validated_data["reason"],
            note=data.validated_data["note"],
            requested_by=request.user,  # type: ignore[arg-type]
        )
        body = refund_out(refund)
        body["approval_required"] = refund.approval_required and refund.approved_at is None
        return Response(body, status=201)
