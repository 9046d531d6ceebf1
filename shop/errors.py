"""One application error type with stable codes, and the JSON shape every API error takes."""

from __future__ import annotations

import logging
from typing import Any

from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """An expected failure with a stable ``code`` the client can branch on.

    ``detail`` is a sentence safe to show a shopper; operator detail goes to the log instead.
    """

    status = 400

    def __init__(self, code: str, detail: str, *, status: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        if status is not None:
            self.status = status


class NotFound(ApplicationError):
    def __init__(self, detail: str = "Not found.") -> None:
        super().__init__("not_found", detail, status=404)


class Conflict(ApplicationError):
    status = 409


def error_body(code: str, detail: str) -> dict[str, str]:
    return {"code": code, "detail": detail}


_DRF_CODES: dict[type[Exception], str] = {
    drf_exceptions.ParseError: "malformed_json",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.Throttled: "rate_limited",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "not_authenticated",
    drf_exceptions.PermissionDenied: "permission_denied",
}


def _flatten(detail: Any, prefix: str = "") -> list[str]:
    if isinstance(detail, dict):
        out: list[str] = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            out += _flatten(value, f"{prefix}{name}." if name else prefix)
        return out
    if isinstance(detail, list):
        out = []
        for index, value in enumerate(detail):
            out += _flatten(value, f"{prefix}{index}." if isinstance(value, dict) else prefix)
        return out
    field = prefix.rstrip(".")
    return [f"{field}: {detail}" if field else str(detail)]


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Turn every error raised in an API view into ``{"code", "detail"}``."""
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.detail), status=exc.status)
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found."), status=404)
    if isinstance(exc, drf_exceptions.ValidationError):
        code = "invalid_request"
        codes = exc.get_codes()
        if isinstance(codes, dict):
            # A serializer may name a more specific code for the first failing field.
            for value in codes.values():
                first = value[0] if isinstance(value, list) and value else value
                if isinstance(first, str) and first.startswith("x_"):
                    code = first[2:]
                    break
        return Response(error_body(code, "; ".join(_flatten(exc.detail))), status=400)
    if isinstance(exc, drf_exceptions.APIException):
        code = next(
            (c for klass, c in _DRF_CODES.items() if isinstance(exc, klass)), "request_error"
        )
        headers = {}
        wait = getattr(exc, "wait", None)
        if isinstance(exc, drf_exceptions.Throttled) and wait:
            headers["Retry-After"] = str(int(wait) + 1)
        return Response(error_body(code, str(exc.detail)), status=exc.status_code, headers=headers)
    return None
