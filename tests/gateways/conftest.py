"""Fixtures for the gateway adapter tests.

Unit tests build adapters on a ``requests.Session`` whose transport is a ``CannedTransport``:
a real ``requests`` adapter that answers from a handler function instead of the network (no
``mock.patch``). The gateway side of every exchange is played by the official SDKs where they
can sign (python-alipay-sdk with the sandbox's Alipay private key, wechatpayv3's ``rsa_sign``),
so our verification is checked against someone else's signing code.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from alipay import AliPay
from wechatpayv3.utils import load_private_key as sdk_load_private_key
from wechatpayv3.utils import rsa_sign as sdk_rsa_sign

from payments.gateways.alipay import AlipayGateway
from payments.gateways.registry import get_gateway
from payments.gateways.wechatpay import WechatPayGateway
from shop.credentials import local_credentials
from tests.gateways.gateway_doubles import CannedTransport, Handler, canned_session, no_network


@pytest.fixture(scope="session")
def creds() -> dict[str, Any]:
    return local_credentials()


# --- Alipay ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def alipay_side_sdk(creds: dict[str, Any]) -> AliPay:
    """python-alipay-sdk playing *Alipay*: it signs with Alipay's (sandbox) private key."""
    ali = creds["alipay"]
    return AliPay(
        appid=ali["app_id"],
        app_private_key_string=ali["alipay_private_key_pem"],
        alipay_public_key_string=ali["app_public_key_pem"],
    )


@pytest.fixture(scope="session")
def merchant_side_sdk(creds: dict[str, Any]) -> AliPay:
    """python-alipay-sdk playing *the merchant*: it signs requests with the app private key."""
    ali = creds["alipay"]
    return AliPay(
        appid=ali["app_id"],
        app_private_key_string=ali["app_private_key_pem"],
        alipay_public_key_string=ali["alipay_public_key_pem"],
    )


@pytest.fixture
def alipay_factory(
    creds: dict[str, Any],
) -> Callable[..., tuple[AlipayGateway, CannedTransport]]:
    def build(
        handler: Handler = no_network, gateway_url: str = "https://alipay.test/gateway.do"
    ) -> tuple[AlipayGateway, CannedTransport]:
        ali = creds["alipay"]
        session, transport = canned_session(handler)
        gateway = AlipayGateway(
            app_id=ali["app_id"],
            seller_id=ali["seller_id"],
            app_private_key_pem=ali["app_private_key_pem"],
            alipay_public_key_pem=ali["alipay_public_key_pem"],
            gateway_url=gateway_url,
            connect_timeout=1.0,
            read_timeout=2.0,
            session=session,
        )
        return gateway, transport

    return build


# --- WeChat Pay -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def wechat_platform_key(creds: dict[str, Any]) -> Any:
    return sdk_load_private_key(creds["wechat"]["platform_private_key_pem"])


@pytest.fixture
def wechat_factory(
    creds: dict[str, Any],
) -> Callable[..., tuple[WechatPayGateway, CannedTransport]]:
    def build(
        handler: Handler = no_network, base_url: str = "https://wechat.test"
    ) -> tuple[WechatPayGateway, CannedTransport]:
        wx = creds["wechat"]
        session, transport = canned_session(handler)
        gateway = WechatPayGateway(
            appid=wx["appid"],
            mchid=wx["mchid"],
            merchant_private_key_pem=wx["merchant_private_key_pem"],
            merchant_serial_no=wx["merchant_serial_no"],
            apiv3_key=wx["apiv3_key"],
            platform_public_key_pem=wx["platform_public_key_pem"],
            platform_public_key_id=wx["platform_public_key_id"],
            base_url=base_url,
            connect_timeout=1.0,
            read_timeout=2.0,
            notify_window_seconds=300,
            session=session,
        )
        return gateway, transport

    return build


@pytest.fixture
def wechat_signed_headers(
    creds: dict[str, Any], wechat_platform_key: Any
) -> Iterator[Callable[..., dict[str, str]]]:
    """Platform-signed headers for a body, signed by wechatpayv3's ``rsa_sign``."""

    def sign(
        body: bytes | str,
        *,
        timestamp: int | None = None,
        nonce: str = "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        serial: str | None = None,
    ) -> dict[str, str]:
        text = body.decode() if isinstance(body, bytes) else body
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = sdk_rsa_sign(wechat_platform_key, f"{ts}\n{nonce}\n{text}\n")
        return {
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": serial or creds["wechat"]["platform_public_key_id"],
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
        }

    yield sign


# --- the live sandbox -----------------------------------------------------------------------

LIVE_READ_TIMEOUT = 1.5
LIVE_HANG_SECONDS = 3.0  # longer than the read timeout, so a hang is a timeout to us


@pytest.fixture(scope="session")
def gateway_sandbox() -> Iterator[Any]:
    """One sandbox gateway process for this package's live tests."""
    from tests.support.sandbox import start_sandbox

    # Short retry steps so a notify our receiver refuses comes back quickly.
    proc = start_sandbox(extra_env={"SANDBOX_NOTIFY_SCHEDULE": "1,1"})
    yield proc
    proc.stop()


@dataclass
class Live:
    control: Any
    base_url: str
    alipay: AlipayGateway
    wechat: WechatPayGateway

    def gateway(self, channel: str) -> AlipayGateway | WechatPayGateway:
        return self.alipay if channel == "alipay" else self.wechat


@pytest.fixture
def live(gateway_sandbox: Any, settings: Any) -> Live:
    """Adapters from the registry, pointed at a freshly reset sandbox with short timeouts."""
    from tests.support.sandbox import SandboxControl

    control = SandboxControl(gateway_sandbox.base_url)
    control.reset()
    control.set_faults(hang_seconds=LIVE_HANG_SECONDS)
    gateways = copy.deepcopy(settings.PAYMENT_GATEWAYS)
    gateways["alipay"]["GATEWAY_URL"] = f"{gateway_sandbox.base_url}/gateway.do"
    gateways["wechat"]["BASE_URL"] = gateway_sandbox.base_url
    settings.PAYMENT_GATEWAYS = gateways
    settings.GATEWAY_CONNECT_TIMEOUT = 1.0
    settings.GATEWAY_READ_TIMEOUT = LIVE_READ_TIMEOUT
    alipay = get_gateway("alipay")
    wechat = get_gateway("wechat")
    assert isinstance(alipay, AlipayGateway) and isinstance(wechat, WechatPayGateway)
    # A proxy from the environment must never see loopback traffic.
    alipay.session.trust_env = False
    wechat.session.trust_env = False
    return Live(control, gateway_sandbox.base_url, alipay, wechat)


class NotifyReceiver:
    """A tiny merchant endpoint: records each notification and answers as told."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes, str]] = []
        self.answers: dict[str, tuple[int, bytes, str]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                channel = self.path.rstrip("/").rsplit("/", 1)[-1]
                with receiver._lock:
                    receiver.received.append(
                        (
                            channel,
                            dict(self.headers.items()),
                            body,
                            self.headers.get("Content-Type", ""),
                        )
                    )
                    status, payload, content_type = receiver.answers.get(
                        channel, (500, b"not ready", "text/plain")
                    )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def for_channel(self, channel: str) -> list[tuple[dict[str, str], bytes, str]]:
        with self._lock:
            return [(h, b, c) for ch, h, b, c in self.received if ch == channel]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def notify_receiver() -> Iterator[NotifyReceiver]:
    receiver = NotifyReceiver()
    yield receiver
    receiver.stop()
