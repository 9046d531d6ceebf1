"""HTTP clients for the shop's JSON API and the sandbox's control API.

Calls never raise for HTTP trouble: they return an ``Answer`` whose ``status`` is 0 when no
answer came (refused, reset, timed out), so a shopper can decide what a real client would do.
Connection failures are retried within a deadline because the web tier is killed and restarted
on purpose during a run; a request that may not be repeated says so with ``retry=False``.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

import requests

# How long a call keeps retrying "no answer" and 429: longer than a web restart takes.
RETRY_WINDOW_SECONDS = 25.0
REQUEST_TIMEOUT_SECONDS = 30.0


class NotLoopback(ValueError):
    """A URL that would send chaos traffic somewhere other than this machine."""


def require_loopback(url: str) -> str:
    """Return ``url`` if its host is a loopback address; chaos traffic never leaves the host."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return url
    try:
        if ipaddress.ip_address(host).is_loopback:
            return url
    except ValueError:
        pass
    raise NotLoopback(f"refusing non-loopback URL: {url}")


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer at all
    body: Any  # parsed JSON, or None
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def code(self) -> str:
        """The API's error code (``{"code": ...}``), or ""."""
        return str(self.body.get("code", "")) if isinstance(self.body, dict) else ""


class CallStats:
    """Counts of (call name, status) across all threads, for the report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int]] = Counter()

    def add(self, name: str, status: int) -> None:
        with self._lock:
            self._counts[(name, status)] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            out: dict[str, dict[str, int]] = {}
            for (name, status), count in sorted(self._counts.items()):
                out.setdefault(name, {})[str(status)] = count
            return out


class _Http:
    def __init__(self, base_url: str, stats: CallStats | None = None) -> None:
        self.base_url = require_loopback(base_url.rstrip("/"))
        self.stats = stats
        self._session = requests.Session()
        self._session.trust_env = False  # an environment proxy must never see loopback traffic

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        name: str,
        method: str,
        url: str,
        *,
        retry: bool = True,
        window: float = RETRY_WINDOW_SECONDS,
        **kwargs: Any,
    ) -> Answer:
        require_loopback(url)
        kwargs.setdefault("timeout", REQUEST_TIMEOUT_SECONDS)
        kwargs.setdefault("allow_redirects", False)
        deadline = time.monotonic() + window
        pause = 0.25
        while True:
            answer = self._once(method, url, **kwargs)
            if self.stats is not None:
                self.stats.add(name, answer.status)
            again = answer.status == 0 or answer.status == 429
            if not (retry and again) or time.monotonic() + pause > deadline:
                return answer
            time.sleep(pause)
            pause = min(pause * 2, 3.0)

    def _once(self, method: str, url: str, **kwargs: Any) -> Answer:
        try:
            response = self._session.request(method, url, **kwargs)
        except requests.RequestException as exc:
            return Answer(0, None, type(exc).__name__)
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(response.status_code, body)


class ShopApi(_Http):
    """The JSON API of contract.md, as an integrator calls it."""

    @staticmethod
    def _bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def health(self) -> Answer:
        return self.call("healthz", "GET", f"{self.base_url}/healthz", retry=False, timeout=3)

    def products(self) -> Answer:
        return self.call("products", "GET", f"{self.base_url}/api/v1/products/")

    def create_order(self, body: dict[str, Any], key: str | None) -> Answer:
        headers = {"Idempotency-Key": key} if key is not None else {}
        # Without a key a retry could make a second order, as it would for a real client.
        return self.call(
            "create_order",
            "POST",
            f"{self.base_url}/api/v1/orders/",
            json=body,
            headers=headers,
            retry=key is not None,
        )

    def order(self, order_id: str, token: str, *, retry: bool = True) -> Answer:
        return self.call(
            "get_order",
            "GET",
            f"{self.base_url}/api/v1/orders/{order_id}/",
            headers=self._bearer(token),
            retry=retry,
        )

    def pay(self, order_id: str, token: str, channel: str, client: str) -> Answer:
        # Repeating apply-pay is what a shopper's retry does; the shop must cope with it.
        return self.call(
            "apply_pay",
            "POST",
            f"{self.base_url}/api/v1/orders/{order_id}/pay",
            json={"channel": channel, "client": client},
            headers=self._bearer(token),
        )

    def cancel(self, order_id: str, token: str) -> Answer:
        return self.call(
            "cancel",
            "POST",
            f"{self.base_url}/api/v1/orders/{order_id}/cancel",
            headers=self._bearer(token),
        )


class SandboxApi(_Http):
    """The sandbox's control API, plus what a shopper's browser or app does there."""

    def set_faults(self, faults: dict[str, float]) -> Answer:
        return self.call("sandbox_faults", "POST", f"{self.base_url}/sandbox/faults", json=faults)

    def faults(self) -> Answer:
        return self.call("sandbox_faults", "GET", f"{self.base_url}/sandbox/faults")

    def pay(self, channel: str, out_trade_no: str) -> Answer:
        return self.call(
            "sandbox_pay",
            "POST",
            f"{self.base_url}/sandbox/pay",
            json={"channel": channel, "out_trade_no": out_trade_no},
        )

    def ledger(self) -> Answer:
        return self.call("sandbox_ledger", "GET", f"{self.base_url}/sandbox/ledger")

    def notifications(self) -> Answer:
        return self.call("sandbox_notifications", "GET", f"{self.base_url}/sandbox/notifications")

    def open_url(self, url: str) -> Answer:
        """GET a page as the shopper's browser would (a cashier page, a gateway redirect)."""
        return self.call("open_action", "GET", url)

    def open_alipay_app(self, order_string: str) -> Answer:
        """What the Alipay app does with the order string: bring it to the gateway."""
        return self.call("open_action", "GET", f"{self.base_url}/gateway.do?{order_string}")
