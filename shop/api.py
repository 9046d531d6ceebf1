from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shop.models import Product
from shop.money import Money
from shop.schema import ProductOut, errors


class ProductListApi(APIView):
    @extend_schema(responses={200: ProductOut(many=True), **errors(405, 429)})
    def get(self, request: Request) -> Response:
        return Response(
            [
                {
                    "sku": p.sku,
                    "name": p.name,
                    "price": Money(p.price_amount, p.currency).as_dict(),
                    "stock": p.stock,
                }
                for p in Product.objects.filter(is_active=True).order_by("sku")
            ]
        )
