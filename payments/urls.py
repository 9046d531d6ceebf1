from django.urls import path

from payments import pages, views

urlpatterns = [
    path("notify/<str:channel>/", views.notify, name="payment-notify"),
    path("return/<str:channel>/", pages.payment_return, name="payment-return"),
]
