"""A complete production environment for the settings: every secret and gateway credential set
(dummy values: nothing here talks to a gateway)."""

from __future__ import annotations

import secrets

GATEWAY_VARIABLES = [
    "ALIPAY_APP_ID",
    "ALIPAY_SELLER_ID",
    "ALIPAY_APP_PRIVATE_KEY",
    "ALIPAY_PUBLIC_KEY",
    "ALIPAY_GATEWAY_URL",
    "WECHAT_APPID",
    "WECHAT_MCHID",
    "WECHAT_MERCHANT_PRIVATE_KEY",
    "WECHAT_MERCHANT_SERIAL_NO",
    "WECHAT_APIV3_KEY",
    "WECHAT_PLATFORM_PUBLIC_KEY",
    "WECHAT_PLATFORM_PUBLIC_KEY_ID",
    "WECHAT_BASE_URL",
]


def production_env() -> dict[str, str]:
    env = {name: f"prod-{name.lower()}-{secrets.token_hex(4)}" for name in GATEWAY_VARIABLES}
    env["ALIPAY_GATEWAY_URL"] = "https://openapi.alipay.com/gateway.do"
    env["WECHAT_BASE_URL"] = "https://api.mch.weixin.qq.com"
    env.update(
        PRODUCTION="1",
        SECRET_KEY=secrets.token_urlsafe(60),
        OUTBOX_WEBHOOK_SECRET=secrets.token_urlsafe(32),
        DEBUG="0",
    )
    return env
