"""Fixtures for the gateway adapter tests.

Unit tests build adapters on a ``requests.Session`` whose transport is a ``CannedTransport``:
a real ``requests`` adapter that answers from a handler function instead of the network (no
``mock.patch``). The gateway side of every exchange is played by the official SDKs where they
can sign (python-alipay-sdk with the sandbox's Alipay private key, wechatpayv3's ``rsa_sign``),
so our verification is checked against someone else's signing code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alipay import AliPay
from wechatpayv3.utils import load_private_key as sdk_load_private_key
from wechatpayv3.utils import rsa_sign as sdk_rsa_sign

from payments.gateways.alipay import AlipayGateway
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
