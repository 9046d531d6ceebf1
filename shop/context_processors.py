from django.http import HttpRequest

from shop.cart import cart_items


def cart_summary(request: HttpRequest) -> dict[str, int]:
    if not hasattr(request, "session"):
        return {"cart_count": 0}
    return {"cart_count": sum(cart_items(request.session).values())}
