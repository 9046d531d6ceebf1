from django.urls import path

from orders.api import OrderCancelApi, OrderCreateApi, OrderDetailApi
from payments.api import ApplyPayApi
from refunds.api import OrderRefundApi
from shop.api import ProductListApi

urlpatterns = [
    path("products/", ProductListApi.as_view(), name="api-products"),
    path("orders/", OrderCreateApi.as_view(), name="api-order-create"),
    path("orders/<str:order_id>/", OrderDetailApi.as_view(), name="api-order-detail"),
    path("orders/<str:order_id>/pay", ApplyPayApi.as_view(), name="api-order-pay"),
    path("orders/<str:order_id>/cancel", OrderCancelApi.as_view(), name="api-order-cancel"),
    path("orders/<str:order_id>/refunds", OrderRefundApi.as_view(), name="api-order-refund"),
]
