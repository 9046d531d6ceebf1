"""Gunicorn hooks: an access log without secrets and a closed connection after a refused body.

Query strings (an Alipay return carries its ``sign``, a payment page its one-time nonce) and
headers pass through ``shop.logredact``."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from shop.logredact import redact, redact_query


class RedactingLogger(Logger):
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> Any:
        atoms = super().atoms(resp, req, environ, request_time)
        query = redact_query(environ.get("QUERY_STRING", ""))
        atoms["q"] = query
        atoms["r"] = "{} {}{} {}".format(
            environ.get("REQUEST_METHOD", "-"),
            environ.get("PATH_INFO", ""),
            f"?{query}" if query else "",
            environ.get("SERVER_PROTOCOL", "-"),
        )
        for name in ("a", "f"):  # user agent and referer can carry a query string too
            if isinstance(atoms.get(name), str):
                atoms[name] = redact(atoms[name])
        if isinstance(atoms.get("f"), str) and "?" in atoms["f"]:
            base, _, query_part = atoms["f"].partition("?")
            atoms["f"] = f"{base}?{redact_query(query_part)}"
        return atoms


def close_if_oversized(req: Any) -> None:
    """Tell gunicorn to answer ``Connection: close`` to a request whose body we will refuse
    unread (shop.middleware.RequestGuardMiddleware answers it 413)."""
    from django.conf import settings

    for name, value in req.headers:
        if name.upper() == "CONTENT-LENGTH":
            try:
                too_large = int(value) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            except ValueError:
                too_large = True
            if too_large:
                req.force_close()
