"""Open pages against a running shop: what hundreds of open order pages cost everyone else.

Each simulated page polls its order's status every ``interval`` seconds, as ``status.js``
does, on a kept-alive connection. Meanwhile a prober sends, one after another, the requests
that must never starve: ``/healthz``, a gateway callback (a forged one: it gets ``fail``) and
a payment page. The floor is the same probes with no page open, measured in the same run.
Figures, never assertions.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests


@dataclass
class Probes:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: int = 0

    def p(self, name: str, q: float) -> float:
        values = sorted(self.latencies.get(name, []))
        if not values:
            return 0.0
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    def median_all(self) -> float:
        every = [v for values in self.latencies.values() for v in values]
        return statistics.median(every) * 1000 if every else 0.0


def _probe_once(session: requests.Session, base: str, order: str, token: str) -> dict[str, float]:
    calls: dict[str, Callable[[], requests.Response]] = {
        "healthz": lambda: session.get(f"{base}/healthz", timeout=60),
        "callback": lambda: session.post(
            f"{base}/payments/notify/alipay/",
            data={"out_trade_no": "OPBENCHNOSUCH", "sign": "forged"},
            timeout=60,
        ),
        "page": lambda: session.get(
            f"{base}/orders/{order}/pay", headers={"Authorization": f"Bearer {token}"}, timeout=60
        ),
    }
    out = {}
    for name, call in calls.items():
        started = time.perf_counter()
        call()
        out[name] = time.perf_counter() - started
    return out


def probe(base: str, order: str, token: str, seconds: float) -> Probes:
    result = Probes()
    session = requests.Session()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            for name, value in _probe_once(session, base, order, token).items():
                result.latencies.setdefault(name, []).append(value)
        except requests.RequestException:
            result.failures += 1
    return result


def open_pages(
    base: str, order: str, token: str, pages: int, interval: float, stop: threading.Event
) -> tuple[list[threading.Thread], list[int]]:
    answered = [0, 0]  # answered, failed

    def page() -> None:
        session = requests.Session()
        # As a browser does: a GET on a kept-alive connection the server just closed is resent.
        session.mount("http://", requests.adapters.HTTPAdapter(max_retries=1))
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        while not stop.is_set():
            try:
                ok = session.get(f"{base}/orders/{order}/status", headers=headers, timeout=60).ok
                answered[0 if ok else 1] += 1
            except requests.RequestException:
                answered[1] += 1
            stop.wait(interval)

    threads = [threading.Thread(target=page, daemon=True) for _ in range(pages)]
    for thread in threads:
        thread.start()
    return threads, answered


def make_order(base: str) -> tuple[str, str]:
    products = requests.get(f"{base}/api/v1/products/", timeout=30).json()
    sku = next(p["sku"] for p in products if p["stock"] > 0)
    created = requests.post(
        f"{base}/api/v1/orders/",
        json={"items": [{"sku": sku, "quantity": 1}], "email": "bench@example.com"},
        timeout=30,
    )
    created.raise_for_status()
    return created.json()["id"], created.json()["access_token"]


def run(
    base: str, pages: int, seconds: float, interval: float, write: Callable[[str], None]
) -> None:
    order, token = make_order(base)
    floor = probe(base, order, token, seconds / 2)
    stop = threading.Event()
    threads, answered = open_pages(base, order, token, pages, interval, stop)
    time.sleep(interval)  # every page has opened and polled once
    started = time.monotonic()
    loaded = probe(base, order, token, seconds)
    elapsed = time.monotonic() - started
    stop.set()
    for thread in threads:
        thread.join(timeout=70)
    write(
        f"{pages} open pages polling every {interval:g} s: {answered[0]} status answers "
        f"({answered[0] / (elapsed + interval):.0f}/s), {answered[1]} failed"
    )
    write(f"{'probe':<10} {'floor p50/p99 ms':>18} {'open pages p50/p99 ms':>24} {'ratio p50':>10}")
    for name in ("healthz", "callback", "page"):
        ratio = loaded.p(name, 0.5) / floor.p(name, 0.5) if floor.p(name, 0.5) else 0.0
        write(
            f"{name:<10} {floor.p(name, 0.5):>8.1f} / {floor.p(name, 0.99):<7.1f} "
            f"{loaded.p(name, 0.5):>12.1f} / {loaded.p(name, 0.99):<9.1f} {ratio:>8.2f}"
        )
    write(f"probe failures: floor {floor.failures}, with open pages {loaded.failures}")
