from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from shop.errors import error_body

# Everything is served by the project itself: no CDN, no third-party script, style, font or
# image, no inline script or style. Forms post only to us: a payment page forwards the window
# to a gateway by navigation, never by a cross-origin form post.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-src 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ]
)

# Gateway callbacks answer bad input in the gateway's own format (payments.callbacks), never
# in ours: a gateway retries on its failure answer and would not understand {"code", "detail"}.
CALLBACK_PREFIX = "/payments/notify/"


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith("/admin/"):
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


def wants_json(request: HttpRequest) -> bool:
    path = request.path
    return (
        path.startswith("/api/")
        or path.endswith(("/status", "/events"))
        or "application/json" in request.headers.get("Accept", "")
        or "application/json" in request.headers.get("Content-Type", "")
    )


def refusal(request: HttpRequest, status: int, code: str, detail: str) -> HttpResponse:
    """A 4xx before any view ran: the JSON error shape for API clients, plain text otherwise."""
    if wants_json(request):
        return JsonResponse(error_body(code, detail), status=status)
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")


def _has_nul(raw: str) -> bool:
    return b"\x00" in unquote_to_bytes(raw) or "\x00" in raw


class RequestGuardMiddleware:
    """Refuse what no view should ever see, before any view or database query runs.

    - a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (by its Content-Length): 413, and the
      connection is closed, because the unread body would otherwise be taken for the next
      request on a kept-alive connection;
    - a NUL anywhere in the path, the query string or a form field: PostgreSQL text cannot hold
      one, so it can only be an attack or a broken client (400).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        callback = request.path.startswith(CALLBACK_PREFIX)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return refusal(request, 400, "invalid_request", "Content-Length is not a number.")
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE and not callback:
            response = refusal(
                request,
                413,
                "request_too_large",
                f"The request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
            )
            response["Connection"] = "close"
            return response
        if _has_nul(request.path) or _has_nul(request.META.get("QUERY_STRING", "")):
            return refusal(request, 400, "invalid_request", "The address contains a NUL byte.")
        if (
            request.method == "POST"
            and not callback
            and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data")
            and any(
                "\x00" in key or any("\x00" in v for v in values)
                for key, values in request.POST.lists()
            )
        ):
            return refusal(request, 400, "invalid_request", "A form field contains a NUL byte.")
        return self.get_response(request)
