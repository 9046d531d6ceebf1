"""Wire helpers shared by the Alipay and WeChat Pay adapters.

SHA256withRSA (PKCS#1 v1.5) with base64 signatures is what both providers use; amounts travel
as yuan strings (Alipay, WeChat bills) or fen integers (WeChat API), and both speak China time.
Nothing here logs keys or signatures.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import secrets
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
_CENT = Decimal("0.01")


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("expected an RSA private key")
    return key


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("expected an RSA public key")
    return key


def rsa_sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256withRSA, PKCS#1 v1.5, base64 without line breaks."""
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa_verify(public_key: rsa.RSAPublicKey, message: bytes, signature: str) -> bool:
    """True only for a well-formed base64 SHA256withRSA signature over exactly ``message``."""
    try:
        raw = base64.b64decode(signature.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        return False
    if not raw:
        return False
    try:
        public_key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def signature_hint(signature: str) -> str:
    """A short, loggable stand-in for a signature (never log the whole thing)."""
    return f"{signature[:6]}…({len(signature)} chars)" if signature else "(none)"


def sorted_pairs_content(
    params: Mapping[str, str], *, exclude: Iterable[str], drop_empty: bool
) -> str:
    """``k1=v1&k2=v2`` over the raw (un-encoded) values, keys in ASCII order."""
    skip = set(exclude)
    items = sorted(
        (k, v) for k, v in params.items() if k not in skip and not (drop_empty and v == "")
    )
    return "&".join(f"{k}={v}" for k, v in items)


def nonce_str() -> str:
    return secrets.token_hex(16).upper()


def minor_to_yuan(amount: int) -> str:
    """Fen (minor units) to a yuan string with exactly two decimals: 1 -> "0.01"."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amount must be an int in minor units")
    return str((Decimal(amount) / 100).quantize(_CENT))


def yuan_to_minor(value: str) -> int:
    """A yuan string (at most two decimals) to fen; raises ValueError for anything else."""
    text = value.strip()
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    fen = amount * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"more than two decimals: {value!r}")
    return int(fen)


def to_china_time(moment: dt.datetime) -> dt.datetime:
    """Naive datetimes are taken as UTC (the project runs with USE_TZ and TIME_ZONE=UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(CHINA_TZ)


def parse_china_time(value: str) -> dt.datetime | None:
    """``yyyy-MM-dd HH:mm:ss`` in China time, as an aware datetime; None if empty or invalid."""
    text = value.strip()
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA_TZ)
    except ValueError:
        return None
