from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders.selectors import order_get_for_api
from orders.serializers import attempt_out
from payments.apply_pay import payment_apply
from payments.models import Channel, Client
from shop.schema import COMMON_ERRORS, AttemptOut, OrderTokenAuthentication, errors


class ApplyPayInput(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    client = serializers.ChoiceField(choices=Client.choices)


class ApplyPayApi(APIView):
    throttle_scope = "apply_pay"
    authentication_classes = [OrderTokenAuthentication]

    @extend_schema(
        request=ApplyPayInput,
        responses={
            200: AttemptOut,
            201: AttemptOut,
            **errors(*COMMON_ERRORS, 403, 404, 409, 503),
        },
    )
    def post(self, request: Request, order_id: str) -> Response:
        order = order_get_for_api(request, order_id)
        data = ApplyPayInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = payment_apply(
            order_id=order.pk,
            channel=data.validated_data["channel"],
            client=data.validated_data["client"],
        )
        return Response(attempt_out(result.attempt), status=201 if result.created else 200)
