"""Log redaction: no signature, key, access token or full e-mail address reaches a log line.

Installed as the log record factory (``ShopConfig.ready``), so every process that loads Django
— web, Celery worker and beat — and every handler (Celery's own included) sees only redacted
messages. Gunicorn's access log goes through ``shop.gunicorn_support`` (``gunicorn.conf.py``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote

REDACTED = "[redacted]"

# Query or form parameters whose value is a secret: signatures, tokens, keys, one-time nonces.
SECRET_PARAM = re.compile(r"sign|token|key|secret|pass|auth|nonce|shown|ciphertext", re.I)

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----", re.S)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I)
_PAIR = re.compile(
    r"""(?P<name>["']?[A-Za-z_]*(?:sign|token|secret|password|apiv3_key|private_key|nonce)"""
    r"""[A-Za-z_]*["']?\s*[=:]\s*)(?P<value>"[^"]*"|'[^']*'|[^\s&,;"'}]+)""",
    re.I,
)
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")


def redact(text: str) -> str:
    text = _PEM.sub("[redacted key]", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _PAIR.sub(lambda m: m.group("name") + REDACTED, text)
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


def redact_query(query: str) -> str:
    """A query string with every secret parameter's value replaced (names kept for debugging)."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return redact(
        "&".join(
            f"{quote(name)}={REDACTED if SECRET_PARAM.search(name) else quote(value)}"
            for name, value in pairs
        )
    )


def install_record_factory() -> None:
    """Redact each record's message as it is made: formatted once, args dropped."""
    current: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
    if getattr(current, "_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: leave it for the handler to report
            return record
        redacted = redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, ()
        return record

    factory._redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
