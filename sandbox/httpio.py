"""Framework-free request and response values passed between the server and the handlers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the raw request-target (path and query exactly as sent; WeChat signs it)
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def query_params(self) -> dict[str, str]:
        return dict(parse_qsl(self.query, keep_blank_values=True))

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    hang_seconds: float = 0.0  # sleep before answering (or before dropping)
    drop_connection: bool = False  # close the connection without any answer
    body_path: str = ""  # stream this file as the body instead (large statements)


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return Response(
        status, body, [("Content-Type", "application/json; charset=utf-8")] + (headers or [])
    )


def text_response(
    status: int, text: str, content_type: str = "text/plain; charset=utf-8"
) -> Response:
    return Response(status, text.encode(), [("Content-Type", content_type)])


def html_response(status: int, html: str) -> Response:
    return text_response(status, html, "text/html; charset=utf-8")


def redirect(location: str, status: int = 302) -> Response:
    return Response(status, b"", [("Location", location)])


def error_json(status: int, code: str, detail: str) -> Response:
    """Control-API errors use the shop's error shape from contract.md."""
    return json_response(status, {"code": code, "detail": detail})
