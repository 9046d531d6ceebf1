"""Fixtures for the sandbox gateway's own suite: one live sandbox process for the session, a
reset before every test, the official SDKs as independent clients, and a local HTTP receiver
that captures the sandbox's notifications and answers them as told.

No database is used here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from alipay import AliPay
from alipay.utils import AliPayConfig
from wechatpayv3 import WeChatPay, WeChatPayType

from shop.credentials import local_credentials
from tests.support.sandbox import SandboxControl, SandboxProcess, start_sandbox


@pytest.fixture(scope="session")
def sandbox_gateway() -> Iterator[SandboxProcess]:
    proc = start_sandbox(extra_env={"SANDBOX_NOTIFY_SCHEDULE": "1,1,1"})
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def control(sandbox_gateway: SandboxProcess) -> SandboxControl:
    ctl = SandboxControl(sandbox_gateway.base_url)
    ctl.reset()
    return ctl


@pytest.fixture(scope="session")
def creds() -> dict[str, Any]:
    return local_credentials()


# --- official SDK clients ------------------------------------------------------------------------


def make_alipay(base_url: str, creds: dict[str, Any], **overrides: Any) -> AliPay:
    ali = creds["alipay"]
    client = AliPay(
        appid=overrides.get("appid", ali["app_id"]),
        app_notify_url=None,
        app_private_key_string=overrides.get("app_private_key", ali["app_private_key_pem"]),
        alipay_public_key_string=ali["alipay_public_key_pem"],
        sign_type="RSA2",
        config=AliPayConfig(timeout=overrides.get("timeout", 10)),
    )
    client._gateway = base_url + "/gateway.do"  # the SDK has no public way to set it
    return client


def make_wechat(
    base_url: str, creds: dict[str, Any], notify_url: str, **overrides: Any
) -> WeChatPay:
    wx = creds["wechat"]
    client = WeChatPay(
        wechatpay_type=overrides.get("wechatpay_type", WeChatPayType.NATIVE),
        mchid=wx["mchid"],
        private_key=overrides.get("private_key", wx["merchant_private_key_pem"]),
        cert_serial_no=wx["merchant_serial_no"],
        appid=wx["appid"],
        apiv3_key=wx["apiv3_key"],
        notify_url=notify_url,
        timeout=overrides.get("timeout", (3, 10)),
        # Public-key mode: no certificate download from the real host during construction.
        public_key=wx["platform_public_key_pem"],
        public_key_id=wx["platform_public_key_id"],
    )
    client._core._gate_way = base_url  # the SDK hard-codes the production host
    return client


@pytest.fixture
def alipay_client(sandbox_gateway: SandboxProcess, creds: dict[str, Any]) -> AliPay:
    return make_alipay(sandbox_gateway.base_url, creds)


@pytest.fixture
def wechat_client(
    sandbox_gateway: SandboxProcess, creds: dict[str, Any], receiver: Receiver
) -> WeChatPay:
    return make_wechat(sandbox_gateway.base_url, creds, receiver.url("/notify/wechat"))


# --- the notification receiver -------------------------------------------------------------------


@dataclass(frozen=True)
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()


class Receiver:
    """A tiny threaded HTTP server standing in for the merchant's notify endpoint.

    ``plan`` answers the next requests in order; after it runs out, ``default`` answers.
    """

    def __init__(self) -> None:
        self.requests: list[Captured] = []
        self.plan: list[tuple[int, bytes]] = []
        self.default: tuple[int, bytes] = (200, b"success")
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(
                        Captured(
                            "POST", self.path, dict(self.headers.items()), body, time.monotonic()
                        )
                    )
                    status, answer = receiver.plan.pop(0) if receiver.plan else receiver.default
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/notify") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def captured(self, path: str | None = None) -> list[Captured]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(
        self, count: int, path: str | None = None, timeout: float = 10.0
    ) -> list[Captured]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.captured(path)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"expected {count} notifications, got {len(self.captured(path))}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()
