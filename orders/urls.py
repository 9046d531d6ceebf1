from django.urls import path

from orders import views
from payments import pages
from shop import views as shop_views

urlpatterns = [
    path("cart/", shop_views.cart_view, name="cart"),
    path("cart/add", shop_views.cart_add_view, name="cart-add"),
    path("cart/update", shop_views.cart_update_view, name="cart-update"),
    path("checkout/", views.checkout, name="checkout"),
    path("orders/<str:order_id>/", views.order_detail, name="order-detail"),
    path("orders/<str:order_id>/cancel", views.order_cancel, name="order-cancel"),
    path("orders/<str:order_id>/reorder", views.order_reorder, name="order-reorder"),
    path("orders/<str:order_id>/pay", pages.pay_page, name="payment-page"),
    path("orders/<str:order_id>/pay/submit", pages.pay_submit, name="payment-submit"),
    path("orders/<str:order_id>/pay/check", pages.check_now, name="payment-check"),
    path("orders/<str:order_id>/result", pages.payment_result, name="payment-result"),
    path("orders/<str:order_id>/status", pages.order_status, name="order-status"),
    path("orders/<str:order_id>/events", pages.order_events, name="order-events"),
]
