"""Unguessable public identifiers: a prefix plus 26 random base32 characters (130 bits)."""

import base64
import hashlib
import hmac
import secrets


def random_base32(length: int = 26) -> str:
    raw = secrets.token_bytes((length * 5 + 7) // 8)
    return base64.b32encode(raw).decode().rstrip("=").lower()[:length]


def new_public_id(prefix: str) -> str:
    return f"{prefix}_{random_base32()}"


def new_secret_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, digest: str) -> bool:
    return hmac.compare_digest(token_digest(token), digest)
