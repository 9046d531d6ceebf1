"""Named permissions on every money action, for the API and the admin alike.

``is_staff`` only lets a person into the admin; each action on money needs its own permission,
so a role can be given exactly what it does (the ``Meta.permissions`` of ``Refund`` and
``PaymentAttempt``).
"""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BasicAuthentication
from rest_framework.exceptions import Throttled
from rest_framework.permissions import BasePermission

from shop.clientip import client_address
from shop.login_throttle import login_locked

REQUEST_REFUND = "refunds.request_refund"
APPROVE_REFUND = "refunds.approve_refund"
RETRY_REFUND = "refunds.retry_refund"
QUERY_GATEWAY = "payments.query_gateway"
CLOSE_AT_GATEWAY = "payments.close_at_gateway"


def staff_can(user: Any, permission: str) -> bool:
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm(permission)
    )


class CanRequestRefund(BasePermission):
    message = "You do not have permission to refund orders."

    def has_permission(self, request: Any, view: Any) -> bool:
        return staff_can(request.user, REQUEST_REFUND)


class ThrottledBasicAuthentication(BasicAuthentication):
    """Basic auth that stops answering password guesses: after too many failures from one
    address or for one user name (counted by ``shop.login_throttle``), 429 until the window
    passes, right password or not."""

    def authenticate_credentials(self, userid: str, password: str, request: Any = None) -> Any:
        if request is not None and login_locked(address=client_address(request), username=userid):
            raise Throttled(detail="Too many failed sign-ins. Try again later.")
        return super().authenticate_credentials(userid, password, request)
