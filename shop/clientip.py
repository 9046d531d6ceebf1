"""The client's address, from a configured count of trusted proxies (``TRUSTED_PROXY_COUNT``).

With no trusted proxy (the default) the address is ``REMOTE_ADDR`` and ``X-Forwarded-For`` is
ignored: anyone can send that header, so trusting it lets a client pick a fresh address per
request and reset every per-client limit. Behind N proxies that each append the address they
saw, the client is the N-th entry from the right; entries to its left are the client's own
claims and never trusted.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    remote = str(request.META.get("REMOTE_ADDR", ""))
    proxies = int(settings.TRUSTED_PROXY_COUNT)
    if proxies <= 0:
        return remote
    forwarded = [
        part.strip()
        for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")
        if part.strip()
    ]
    if len(forwarded) < proxies:
        # Fewer hops than proxies configured: the request did not come through all of them.
        return forwarded[0] if forwarded else remote
    return forwarded[-proxies]
