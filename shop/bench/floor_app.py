"""The floor for callbacks over HTTP: a minimal WSGI app, served by the same gunicorn settings as
the shop, that does the least a success notification needs — verify the gateway's signature
(and, for WeChat Pay, decrypt the resource), then in one transaction store the event
(``INSERT … ON CONFLICT``) and, if it is new, move the attempt and the order with conditional
updates and write the outbox row. No framework, no ORM, one persistent connection per thread.

Run as ``gunicorn shop.bench.floor_app:application``; reads ``DATABASE_URL`` and the local
merchant credentials (``shop.credentials``), like the shop in a local stack.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shop.credentials import local_credentials

_credentials = local_credentials()
_ALIPAY_KEY = serialization.load_pem_public_key(
    _credentials["alipay"]["alipay_public_key_pem"].encode()
)
_WECHAT_KEY = serialization.load_pem_public_key(
    _credentials["wechat"]["platform_public_key_pem"].encode()
)
_APIV3_KEY = AESGCM(_credentials["wechat"]["apiv3_key"].encode())
_local = threading.local()

_EVENT_INSERT = """
INSERT INTO payments_gatewayevent (channel, kind, event_id, out_trade_no, outcome, verified,
    rejection, headers, body, payload, deliveries, created_at)
VALUES (%s, 'notification', %s, %s, 'paid', true, '', '{}', %s, '', 1, now())
ON CONFLICT (channel, event_id) WHERE event_id IS NOT NULL DO NOTHING
RETURNING id
"""
_ATTEMPT_CAPTURE = """
UPDATE payments_paymentattempt SET status = 'succeeded', version = version + 1,
    captured_amount = amount, paid_at = now(), updated_at = now()
WHERE channel = %s AND out_trade_no = %s AND amount = %s AND status IN ('created', 'paying')
RETURNING id, order_id
"""
_ORDER_PAID = """
UPDATE orders_order SET status = 'paid', paid_at = now(), paid_attempt_id = %s, updated_at = now()
WHERE id = %s AND status = 'unpaid'
"""
_OUTBOX_INSERT = """
INSERT INTO shop_outboxevent (event_id, topic, payload, status, deliveries, next_attempt_at,
    last_error, created_at)
VALUES (%s, 'order.paid', %s, 'pending', 0, now(), '', now())
"""


def _connection() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["DATABASE_URL"])
        _local.conn = conn
    return conn


def _verify(key: Any, message: bytes, signature_b64: str) -> bool:
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(base64.b64decode(signature_b64), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _wechat(environ: dict[str, Any], body: bytes) -> tuple[str, str, int] | None:
    timestamp = environ.get("HTTP_WECHATPAY_TIMESTAMP", "")
    nonce = environ.get("HTTP_WECHATPAY_NONCE", "")
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    if not _verify(_WECHAT_KEY, message, environ.get("HTTP_WECHATPAY_SIGNATURE", "")):
        return None
    envelope = json.loads(body)
    resource = envelope["resource"]
    plain = _APIV3_KEY.decrypt(
        resource["nonce"].encode(),
        base64.b64decode(resource["ciphertext"]),
        resource["associated_data"].encode(),
    )
    transaction = json.loads(plain)
    return envelope["id"], transaction["out_trade_no"], int(transaction["amount"]["total"])


def _alipay(body: bytes) -> tuple[str, str, int] | None:
    params = dict(parse_qsl(body.decode()))
    signature = params.pop("sign", "")
    params.pop("sign_type", None)
    message = "&".join(f"{k}={params[k]}" for k in sorted(params) if params[k] != "")
    if not _verify(_ALIPAY_KEY, message.encode(), signature):
        return None
    yuan, _, fen = params["total_amount"].partition(".")
    return params["notify_id"], params["out_trade_no"], int(yuan) * 100 + int(fen or 0)


def application(
    environ: dict[str, Any], start_response: Callable[[str, list[tuple[str, str]]], Any]
) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    channel = "wechat" if environ["PATH_INFO"].rstrip("/").endswith("wechat") else "alipay"
    parsed = _wechat(environ, body) if channel == "wechat" else _alipay(body)
    if parsed is None:
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"bad signature"]
    event_id, out_trade_no, amount = parsed
    conn = _connection()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_EVENT_INSERT, [channel, event_id, out_trade_no, body.decode()])
        if cur.fetchone() is not None:  # a first delivery: apply it
            cur.execute(_ATTEMPT_CAPTURE, [channel, out_trade_no, amount])
            captured = cur.fetchone()
            if captured is not None:
                attempt_id, order_id = captured
                cur.execute(_ORDER_PAID, [attempt_id, order_id])
                payload = json.dumps({"out_trade_no": out_trade_no, "amount": amount})
                cur.execute(_OUTBOX_INSERT, [uuid.uuid4(), payload])
    if channel == "wechat":
        start_response("204 No Content", [])
        return [b""]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"success"]
