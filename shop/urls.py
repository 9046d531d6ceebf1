from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from shop import views

urlpatterns = [
    path("", views.product_list, name="product-list"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/", include("shop.api_urls")),
    path("", include("orders.urls")),
    path("payments/", include("payments.urls")),
]
