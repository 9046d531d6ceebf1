"""What the sandbox knows about its one merchant, and the knobs read from the environment.

Keys come from ``shop.credentials.local_credentials()`` so that a fresh clone can pay with no
configuration: the sandbox holds the gateway-side private keys and the merchant's public keys,
the shop holds the other halves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox import crypto
from shop.credentials import local_credentials

# The gateways' published retry intervals (seconds between attempts after the first).
ALIPAY_NOTIFY_SCHEDULE: tuple[float, ...] = (240, 600, 600, 3600, 7200, 21600, 54000)
WECHAT_NOTIFY_SCHEDULE: tuple[float, ...] = (
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
)  # fmt: skip


@dataclass(frozen=True)
class AlipayMerchant:
    app_id: str
    seller_id: str
    app_public_key: rsa.RSAPublicKey  # verifies the merchant's requests
    alipay_private_key: rsa.RSAPrivateKey  # signs our answers, notifies and return parameters


@dataclass(frozen=True)
class WechatMerchant:
    appid: str
    mchid: str
    merchant_serial_no: str
    apiv3_key: str
    platform_public_key_id: str
    merchant_public_key: rsa.RSAPublicKey  # verifies the merchant's Authorization header
    platform_private_key: rsa.RSAPrivateKey  # signs answers and notifications


@dataclass(frozen=True)
class SandboxConfig:
    base_url: str  # how shoppers and merchants reach us: QR targets, cashier and bill URLs
    alipay: AlipayMerchant
    wechat: WechatMerchant
    notify_schedule_override: tuple[float, ...] | None
    seed: int | None
    refund_seconds: float  # how long a WeChat refund stays PROCESSING
    alipay_refund_notify: bool  # Alipay may notify refunds; off by default
    # Pre-written statements served instead of the ledger's (the reconciliation benchmark):
    # ``alipay_YYYYMMDD.zip``, ``wechat_YYYYMMDD_ALL.csv.gz`` with its SHA1 in ``….sha1``.
    bill_dir: str = ""

    def prewritten_bill(self, name: str) -> str:
        """The path of a pre-written statement file, or "" when there is none."""
        if not self.bill_dir:
            return ""
        path = os.path.join(self.bill_dir, name)
        return path if os.path.isfile(path) else ""

    def notify_schedule(self, channel: str) -> tuple[float, ...]:
        if self.notify_schedule_override is not None:
            return self.notify_schedule_override
        return ALIPAY_NOTIFY_SCHEDULE if channel == "alipay" else WECHAT_NOTIFY_SCHEDULE


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"1,1,2"`` → (1.0, 1.0, 2.0). An empty string means "no retries"."""
    steps = [part.strip() for part in text.split(",") if part.strip()]
    values = tuple(float(step) for step in steps)
    if any(value < 0 for value in values):
        raise ValueError("SANDBOX_NOTIFY_SCHEDULE steps must be >= 0")
    return values


def load_config(base_url: str) -> SandboxConfig:
    creds = local_credentials()
    ali = creds["alipay"]
    wx = creds["wechat"]
    schedule_env = os.environ.get("SANDBOX_NOTIFY_SCHEDULE")
    seed_env = os.environ.get("SANDBOX_SEED", "").strip()
    return SandboxConfig(
        base_url=base_url.rstrip("/"),
        alipay=AlipayMerchant(
            app_id=ali["app_id"],
            seller_id=ali["seller_id"],
            app_public_key=crypto.load_public_key(ali["app_public_key_pem"]),
            alipay_private_key=crypto.load_private_key(ali["alipay_private_key_pem"]),
        ),
        wechat=WechatMerchant(
            appid=wx["appid"],
            mchid=wx["mchid"],
            merchant_serial_no=wx["merchant_serial_no"],
            apiv3_key=wx["apiv3_key"],
            platform_public_key_id=wx["platform_public_key_id"],
            merchant_public_key=crypto.load_public_key(wx["merchant_public_key_pem"]),
            platform_private_key=crypto.load_private_key(wx["platform_private_key_pem"]),
        ),
        notify_schedule_override=parse_schedule(schedule_env) if schedule_env is not None else None,
        seed=int(seed_env) if seed_env else None,
        refund_seconds=float(os.environ.get("SANDBOX_REFUND_SECONDS", "1")),
        alipay_refund_notify=os.environ.get("SANDBOX_ALIPAY_REFUND_NOTIFY", "0") == "1",
        bill_dir=os.environ.get("SANDBOX_BILL_DIR", ""),
    )
