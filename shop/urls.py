from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from shop import metrics_view, views

urlpatterns = [
    path("", views.product_list, name="product-list"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics_view.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/", include("shop.api_urls")),
    path("", include("orders.urls")),
    path("payments/", include("payments.urls")),
]

# Unmatched or refused requests answer in the shape the client speaks: JSON for the API.
handler400 = "shop.views.bad_request"
handler404 = "shop.views.page_not_found"
