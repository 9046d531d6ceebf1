"""Build gateway notifications the way the gateways do, signed with the gateway-side keys.

Written independently of the adapters and of the sandbox, straight from protocols.md, so
callback tests exercise the shop's verification rather than a shared helper.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shop.credentials import local_credentials

CHINA = dt.timezone(dt.timedelta(hours=8))


def _sign(private_pem: str, message: bytes) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()  # type: ignore[union-attr,call-arg]


def alipay_notify_form(
    out_trade_no: str,
    amount_fen: int,
    *,
    trade_status: str = "TRADE_SUCCESS",
    notify_id: str | None = None,
    **overrides: str,
) -> dict[str, str]:
    creds = local_credentials()["alipay"]
    now = dt.datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
    params = {
        "notify_time": now,
        "notify_type": "trade_status_sync",
        "notify_id": notify_id or uuid.uuid4().hex,
        "charset": "utf-8",
        "version": "1.0",
        "app_id": creds["app_id"],
        "auth_app_id": creds["app_id"],
        "trade_no": "2026" + secrets.token_hex(8),
        "out_trade_no": out_trade_no,
        "buyer_id": "2088000000000001",
        "seller_id": creds["seller_id"],
        "trade_status": trade_status,
        "total_amount": f"{amount_fen // 100}.{amount_fen % 100:02d}",
        "receipt_amount": f"{amount_fen // 100}.{amount_fen % 100:02d}",
        "subject": "Order",
        "gmt_create": now,
        "gmt_payment": now,
    }
    params.update(overrides)
    unsigned = "&".join(f"{k}={params[k]}" for k in sorted(params))
    params["sign_type"] = "RSA2"
    params["sign"] = _sign(creds["alipay_private_key_pem"], unsigned.encode())
    return params


def alipay_notify_body(params: dict[str, str]) -> bytes:
    return urlencode(params).encode()


def wechat_transaction(out_trade_no: str, amount_fen: int, **overrides: Any) -> dict[str, Any]:
    creds = local_credentials()["wechat"]
    body = {
        "appid": creds["appid"],
        "mchid": creds["mchid"],
        "out_trade_no": out_trade_no,
        "transaction_id": "4200" + secrets.token_hex(10),
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "trade_state_desc": "ok",
        "bank_type": "OTHERS",
        "success_time": dt.datetime.now(CHINA).isoformat(timespec="seconds"),
        "payer": {"openid": "o" + secrets.token_hex(8)},
        "amount": {
            "total": amount_fen,
            "payer_total": amount_fen,
            "currency": "CNY",
            "payer_currency": "CNY",
        },
    }
    body.update(overrides)
    return body


def wechat_notify(
    resource: dict[str, Any],
    *,
    event_id: str | None = None,
    event_type: str = "TRANSACTION.SUCCESS",
    original_type: str = "transaction",
    timestamp: int | None = None,
    signature_prefix: str = "",
) -> tuple[dict[str, str], bytes]:
    creds = local_credentials()["wechat"]
    nonce = secrets.token_hex(6)
    plaintext = json.dumps(resource).encode()
    ciphertext = AESGCM(creds["apiv3_key"].encode()).encrypt(
        nonce.encode(), plaintext, original_type.encode()
    )
    body = json.dumps(
        {
            "id": event_id or str(uuid.uuid4()),
            "create_time": dt.datetime.now(CHINA).isoformat(timespec="seconds"),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": "ok",
            "resource": {
                "algorithm": "AEAD_AES_256_GCM",
                "original_type": original_type,
                "ciphertext": base64.b64encode(ciphertext).decode(),
                "nonce": nonce,
                "associated_data": original_type,
            },
        }
    ).encode()
    ts = str(timestamp if timestamp is not None else int(time.time()))
    header_nonce = secrets.token_hex(16)
    signature = _sign(
        creds["platform_private_key_pem"], f"{ts}\n{header_nonce}\n".encode() + body + b"\n"
    )
    headers = {
        "Content-Type": "application/json",
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": header_nonce,
        "Wechatpay-Signature": signature_prefix + signature,
        "Wechatpay-Serial": creds["platform_public_key_id"],
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }
    return headers, body
