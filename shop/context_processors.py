from typing import Any

from django.conf import settings
from django.http import HttpRequest

from shop.cart import cart_items
from shop.localtime import zone_name


def cart_summary(request: HttpRequest) -> dict[str, int]:
    if not hasattr(request, "session"):
        return {"cart_count": 0}
    return {"cart_count": sum(cart_items(request.session).values())}


def shop_identity(request: HttpRequest) -> dict[str, Any]:
    """The shop's name, the time zone its pages show times in, and its languages, each named in
    itself (a shopper who cannot read this page can still find their own language)."""
    return {
        "shop_name": settings.SHOP_NAME,
        "shop_time_zone": zone_name(),
        "shop_languages": settings.LANGUAGES,
    }
