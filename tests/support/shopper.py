"""An API shopper for end-to-end tests: orders, applies pay, opens actions in the sandbox."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from django.conf import settings

T = TypeVar("T")


def wait_for(probe: Callable[[], T], timeout: float = 20.0, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class Shopper:
    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.http = requests.Session()
        self.token = ""
        self.order_id = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def order(self, sku: str = "TEA", quantity: int = 1) -> dict[str, Any]:
        # A distinct e-mail per shopper: identical bodies within the dedupe window are one order.
        r = self.http.post(
            f"{self.base}/api/v1/orders/",
            json={
                "items": [{"sku": sku, "quantity": quantity}],
                "email": f"{id(self)}@example.com",
            },
            timeout=30,
        )
        assert r.status_code == 201, r.text
        data: dict[str, Any] = r.json()
        self.token, self.order_id = data["access_token"], data["id"]
        return data

    def pay(self, channel: str, client: str = "pc") -> requests.Response:
        return self.http.post(
            f"{self.base}/api/v1/orders/{self.order_id}/pay",
            json={"channel": channel, "client": client},
            headers=self.auth,
            timeout=60,
        )

    def cancel(self) -> requests.Response:
        return self.http.post(
            f"{self.base}/api/v1/orders/{self.order_id}/cancel", headers=self.auth, timeout=60
        )

    def view(self) -> dict[str, Any]:
        r = self.http.get(
            f"{self.base}/api/v1/orders/{self.order_id}/", headers=self.auth, timeout=30
        )
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data


def open_action(action: dict[str, Any]) -> None:
    """What the shopper's browser or app does with a wap/app action before paying."""
    if action.get("type") == "redirect":
        requests.get(action["url"], timeout=10, allow_redirects=False)
    elif action.get("type") == "app" and "order_string" in action.get("params", {}):
        gateway = settings.PAYMENT_GATEWAYS["alipay"]["GATEWAY_URL"]
        requests.get(
            f"{gateway}?{action['params']['order_string']}", timeout=10, allow_redirects=False
        )
