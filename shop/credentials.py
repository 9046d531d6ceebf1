"""Locally generated credentials for the merchant and the sandbox gateway.

A fresh clone must be able to pay in the sandbox with no configuration, yet no key may be
committed. So on first use we generate RSA key pairs and secrets into ``var/credentials.json``
(git-ignored) and both sides — the shop's default gateway configuration and the sandbox — read
them from there. Environment variables override the shop's side for real deployments.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

BASE_DIR = Path(__file__).resolve().parent.parent


def credentials_path() -> Path:
    return Path(os.environ.get("ONCEPAY_VAR_DIR", BASE_DIR / "var")) / "credentials.json"


def _key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def _generate() -> dict[str, Any]:
    alipay_app_private, alipay_app_public = _key_pair()
    alipay_platform_private, alipay_platform_public = _key_pair()
    wechat_merchant_private, wechat_merchant_public = _key_pair()
    wechat_platform_private, wechat_platform_public = _key_pair()
    alphabet = string.ascii_letters + string.digits
    return {
        "secret_key": secrets.token_urlsafe(50),
        "webhook_secret": secrets.token_urlsafe(32),
        "alipay": {
            "app_id": "2021" + "".join(secrets.choice(string.digits) for _ in range(12)),
            "seller_id": "2088" + "".join(secrets.choice(string.digits) for _ in range(12)),
            "app_private_key_pem": alipay_app_private,
            "app_public_key_pem": alipay_app_public,
            "alipay_private_key_pem": alipay_platform_private,
            "alipay_public_key_pem": alipay_platform_public,
        },
        "wechat": {
            "appid": "wx" + secrets.token_hex(8),
            "mchid": "19" + "".join(secrets.choice(string.digits) for _ in range(8)),
            "merchant_private_key_pem": wechat_merchant_private,
            "merchant_public_key_pem": wechat_merchant_public,
            "merchant_serial_no": secrets.token_hex(20).upper(),
            "apiv3_key": "".join(secrets.choice(alphabet) for _ in range(32)),
            "platform_private_key_pem": wechat_platform_private,
            "platform_public_key_pem": wechat_platform_public,
            "platform_public_key_id": "PUB_KEY_ID_" + secrets.token_hex(12).upper(),
        },
    }


def local_credentials() -> dict[str, Any]:
    """Return the local credentials, generating them once.

    Several processes (web, worker, beat, sandbox) may start at the same moment; the file is
    written to a temporary name and linked into place, so exactly one generation wins and every
    process reads the winner's keys.
    """
    path = credentials_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".credentials.{os.getpid()}.{secrets.token_hex(4)}.json")
        tmp.write_text(json.dumps(_generate(), indent=2))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # fails if another process won the race
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def production_problems(
    *, env: Mapping[str, str], required: list[str], sandbox_values: dict[str, tuple[str, str]]
) -> list[str]:
    """What stops a production start: required variables left unset, and any gateway setting
    equal to the local sandbox merchant's (its keys are on disk and known to the sandbox).

    Never generates credentials: production must not mint keys of its own."""
    problems: list[str] = []
    missing = [name for name in required if not env.get(name, "").strip()]
    if "SECRET_KEY" in missing:
        problems.append("SECRET_KEY must be set in production")
        missing.remove("SECRET_KEY")
    if missing:
        problems.append("missing " + ", ".join(missing))
    path = credentials_path()
    local: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    same = [
        variable
        for variable, (group, key) in sandbox_values.items()
        if str(local.get(group, {}).get(key, "")).strip()
        and env.get(variable, "").strip() == str(local[group][key]).strip()
    ]
    if same:
        problems.append("sandbox credentials used for " + ", ".join(sorted(same)))
    return problems
