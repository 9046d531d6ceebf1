"""Failed-login throttle for the two places staff passwords are tried: the refund API's Basic
auth and the admin login form.

Failures are counted in Redis per client address and per user name, each in a fixed window;
once either count reaches ``LOGIN_FAILURE_LIMIT`` further attempts are refused with 429 until
the window passes, even with the right password (otherwise a guesser learns when it hit).
The address comes from ``shop.clientip`` so a forged X-Forwarded-For cannot reset it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from shop.clientip import client_address

logger = logging.getLogger(__name__)


def _keys(address: str, username: str) -> list[str]:
    def key(kind: str, value: str) -> str:
        digest = hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]
        return f"{settings.REDIS_KEY_PREFIX}:login-failures:{kind}:{digest}"

    keys = [key("addr", address)]
    if username:
        keys.append(key("user", username))
    return keys


def login_locked(*, address: str, username: str = "") -> bool:
    try:
        counts = get_redis_connection("default").mget(_keys(address, username))
    except RedisError:
        return False  # no Redis: the password check alone stands
    return any(int(c or 0) >= settings.LOGIN_FAILURE_LIMIT for c in counts)


def login_failure_record(*, address: str, username: str = "") -> None:
    try:
        pipe = get_redis_connection("default").pipeline()
        for key in _keys(address, username):
            pipe.incr(key)
            pipe.expire(key, settings.LOGIN_FAILURE_WINDOW_SECONDS, nx=True)
        pipe.execute()
    except RedisError:
        logger.warning("login failure not counted (Redis unavailable)")
    logger.warning("failed staff login from %s", address)


@receiver(user_login_failed)
def _count_admin_login_failure(sender: object, credentials: dict, request=None, **kwargs) -> None:  # type: ignore[no-untyped-def]
    # Django's authenticate() sends this for the admin form and DRF's Basic auth alike.
    if request is not None:
        login_failure_record(
            address=client_address(request), username=str(credentials.get("username", ""))
        )


class AdminLoginThrottleMiddleware:
    """429 for a login POST to the admin from an address or for a user name that failed too
    often (the failures are counted by the ``user_login_failed`` signal above)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.method == "POST"
            and request.path.rstrip("/").endswith("/admin/login")
            and login_locked(
                address=client_address(request), username=request.POST.get("username", "")
            )
        ):
            response = HttpResponse(
                "Too many failed sign-ins. Try again later.",
                status=429,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = str(settings.LOGIN_FAILURE_WINDOW_SECONDS)
            return response
        return self.get_response(request)
