from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders.selectors import order_get_for_request
from orders.serializers import attempt_out
from payments.models import Channel, Client
from payments.services import payment_apply


class ApplyPayInput(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    client = serializers.ChoiceField(choices=Client.choices)


class ApplyPayApi(APIView):
    throttle_scope = "apply_pay"

    @extend_schema(request=ApplyPayInput, responses={200: dict, 201: dict})
    def post(self, request: Request, order_id: str) -> Response:
        order = order_get_for_request(request, order_id)
        data = ApplyPayInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = payment_apply(
            order_id=order.pk,
            channel=data.validated_data["channel"],
            client=data.validated_data["client"],
        )
        return Response(attempt_out(result.attempt), status=201 if result.created else 200)
