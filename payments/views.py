"""Gateway-facing endpoints: CSRF-exempt, because the signature is the authentication."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.callbacks import notification_handle
from payments.gateways.registry import CHANNELS


@csrf_exempt
@require_POST
def notify(request: HttpRequest, channel: str) -> HttpResponse:
    if channel not in CHANNELS:
        return HttpResponse("unknown channel", status=404, content_type="text/plain")
    ack = notification_handle(
        channel=channel,
        headers=dict(request.headers),
        body=_read_body(request),
        content_type=request.content_type or "",
    )
    return HttpResponse(ack.body, status=ack.status, content_type=ack.content_type)


def _read_body(request: HttpRequest) -> bytes:
    # Read at most one byte past the limit: enough to know it is too large, never the whole.
    from django.conf import settings

    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > limit:
        return request.read(limit + 1)
    return request.body
