"""Structured logs: every line carries the request id and, on a payment's path, the order id and
``out_trade_no``, in the web, the worker and beat alike.

The context lives in ``contextvars`` (per thread and per task, never shared): the request
middleware sets the request id, the payment code binds the order and trade it works on
(``bind``), and the Celery signal handlers bind what a task's arguments identify. A logging
filter copies the context onto every record, so any formatter can print it;
``LOG_FORMAT=json`` (python-json-logger) writes one JSON object per line, ``text`` a readable
line with the same fields at its end.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # settings import this module: nothing of Django's at import time
    from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

FIELDS = ("request_id", "order_id", "out_trade_no")
_context: dict[str, contextvars.ContextVar[str]] = {
    name: contextvars.ContextVar(name, default="") for name in FIELDS
}

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is kept only if it is short and plain (it goes into every log line as is).
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def current() -> dict[str, str]:
    return {name: var.get() for name, var in _context.items()}


def bind(**values: object) -> None:
    """Set context fields for the rest of this request or task (empty values are ignored)."""
    for name, value in values.items():
        if value:
            _context[name].set(str(value))


def bind_attempt(attempt: Any) -> None:
    """Bind the order and trade of a payment attempt (reads its order if not loaded)."""
    bind(out_trade_no=attempt.out_trade_no, order_id=attempt.order.public_id)


def clear() -> None:
    for var in _context.values():
        var.set("")


@contextmanager
def scope(**values: object) -> Iterator[None]:
    """A fresh context for one unit of work, restored afterwards."""
    tokens = [(var, var.set("")) for var in _context.values()]
    bind(**values)
    try:
        yield
    finally:
        for var, token in tokens:
            var.reset(token)


def new_request_id() -> str:
    return uuid.uuid4().hex


class ContextFilter(logging.Filter):
    """Copies the context onto every record (attached to the handlers, so library loggers'
    records get it too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _context.items():
            if not getattr(record, name, ""):
                setattr(record, name, var.get())
        return True


class TextFormatter(logging.Formatter):
    """The readable development format: the context fields that are set, at the line's end."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(
            f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, "")
        )
        return f"{line} [{extra}]" if extra else line


def logging_config(*, fmt: str, level: str) -> dict[str, Any]:
    """The ``LOGGING`` setting: one console handler, JSON or text."""
    if fmt not in ("json", "text"):
        raise ValueError(f"LOG_FORMAT must be json or text, not {fmt!r}")
    formatters = {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "timestamp": False,
        },
        "text": {
            "()": "shop.logs.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "shop.logs.ContextFilter"}},
        "formatters": {fmt: formatters[fmt]},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": fmt,
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"}},
    }


class RequestIdMiddleware:
    """Takes the caller's ``X-Request-ID`` (if plain) or makes one, binds it for the request's
    log lines and echoes it in the response. First in ``MIDDLEWARE``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = given if _SAFE_ID.match(given) else new_request_id()
        # Set, not scoped: Django logs a 4xx/5xx (``django.request``) after the middleware
        # returned, and that line must carry the id too. The next request on this thread
        # starts from a clean context.
        clear()
        bind(request_id=request_id)
        response = self.get_response(request)
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
