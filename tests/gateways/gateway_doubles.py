"""Test doubles for the gateway tests: a canned ``requests`` transport and signed answers.

Kept out of ``conftest.py`` so test modules can import them by their package path.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import requests
from alipay import AliPay
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

Handler = Callable[[requests.PreparedRequest], requests.Response]


def make_response(
    status: int, body: bytes | str = b"", headers: dict[str, str] | None = None
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body.encode() if isinstance(body, str) else body
    response.raw = io.BytesIO(response._content)  # what a stream=True reader reads
    response.headers = CaseInsensitiveDict(headers or {})
    response.encoding = "utf-8"
    return response


class CannedTransport(BaseAdapter):
    """A ``requests`` transport adapter that hands each request to ``handler``."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.sent: list[requests.PreparedRequest] = []
        self.timeouts: list[Any] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # type: ignore[override]
        self.sent.append(request)
        self.timeouts.append(timeout)
        response = self.handler(request)
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def no_network(request: requests.PreparedRequest) -> requests.Response:
    raise AssertionError(f"unexpected network call to {request.url}")


def canned_session(handler: Handler) -> tuple[requests.Session, CannedTransport]:
    session = requests.Session()
    transport = CannedTransport(handler)
    session.mount("http://", transport)
    session.mount("https://", transport)
    return session, transport


def alipay_response(sdk: AliPay, method: str, node: dict[str, Any] | str, sign: bool = True) -> str:
    """An Alipay answer: the node serialised once, signed over exactly those characters."""
    node_text = node if isinstance(node, str) else json.dumps(node, ensure_ascii=False)
    name = method.replace(".", "_") + "_response"
    if not sign:
        return f'{{"{name}":{node_text}}}'
    return f'{{"{name}":{node_text},"sign":"{sdk._sign(node_text)}"}}'
