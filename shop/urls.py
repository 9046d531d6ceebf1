from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic.base import RedirectView
from drf_spectacular.views import SpectacularAPIView

from shop import metrics_view, views

urlpatterns = [
    path("", views.product_list, name="product-list"),
    path("healthz", views.healthz, name="healthz"),
    # Browsers ask for /favicon.ico whatever the page says; send them to the shop's icon.
    path("favicon.ico", RedirectView.as_view(url=static("shop/favicon.svg"), permanent=True)),
    path("i18n/", include("django.conf.urls.i18n")),
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
