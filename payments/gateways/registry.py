"""Build (and cache per process) the adapter for a payment channel from settings.

The cache key is the channel's settings entry plus the timeouts, so a test that overrides
``PAYMENT_GATEWAYS`` or the timeouts gets a fresh adapter, and the old one stays valid for
anyone still holding it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from payments.gateways.alipay import AlipayGateway
from payments.gateways.base import PaymentGateway
from payments.gateways.wechatpay import WechatPayGateway

CHANNELS: tuple[str, ...] = ("alipay", "wechat")

_lock = threading.Lock()
_cache: dict[tuple[Any, ...], PaymentGateway] = {}


def _build_alipay(config: Mapping[str, Any]) -> PaymentGateway:
    return AlipayGateway.from_config(
        config,
        connect_timeout=float(settings.GATEWAY_CONNECT_TIMEOUT),
        read_timeout=float(settings.GATEWAY_READ_TIMEOUT),
    )


def _build_wechat(config: Mapping[str, Any]) -> PaymentGateway:
    return WechatPayGateway.from_config(
        config,
        connect_timeout=float(settings.GATEWAY_CONNECT_TIMEOUT),
        read_timeout=float(settings.GATEWAY_READ_TIMEOUT),
        notify_window_seconds=int(settings.NOTIFY_TIMESTAMP_WINDOW_SECONDS),
    )


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], PaymentGateway]] = {
    "alipay": _build_alipay,
    "wechat": _build_wechat,
}


def get_gateway(channel: str) -> PaymentGateway:
    """The adapter for ``channel`` ("alipay" or "wechat"); ``KeyError`` for anything else."""
    if channel not in CHANNELS:
        raise KeyError(f"unknown payment channel {channel!r}")
    config: Mapping[str, Any] = settings.PAYMENT_GATEWAYS[channel]
    key = (
        channel,
        tuple(sorted((str(k), repr(v)) for k, v in config.items())),
        settings.GATEWAY_CONNECT_TIMEOUT,
        settings.GATEWAY_READ_TIMEOUT,
        settings.NOTIFY_TIMESTAMP_WINDOW_SECONDS,
    )
    with _lock:
        gateway = _cache.get(key)
        if gateway is None:
            # ``BACKEND`` (a dotted path to a factory taking the config) swaps the adapter for
            # another implementation of the interface, e.g. an in-process double in tests.
            backend = config.get("BACKEND")
            build = import_string(backend) if backend else _BUILDERS[channel]
            gateway = build(config)
            _cache[key] = gateway
        return gateway


def clear_cache() -> None:
    """Forget every built adapter (tests that rotate keys)."""
    with _lock:
        _cache.clear()
