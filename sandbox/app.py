"""The sandbox as one object: configuration, faults, ledger, notifier and issued bill files.

Handlers receive it explicitly instead of reaching for module globals, so a test could run two
sandboxes in one process and ``reset`` knows everything it has to forget.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote

from sandbox.config import SandboxConfig
from sandbox.faults import Faults
from sandbox.notifier import Notifier
from sandbox.state import Ledger


@dataclass(frozen=True)
class BillFile:
    content: bytes
    content_type: str
    filename: str
    expires_at: float  # time.monotonic()
    path: str = ""  # a pre-written statement on disk (``SANDBOX_BILL_DIR``), streamed as is


class BillStore:
    """Download links for statements. The file is frozen when the link is issued, so the hash
    WeChat returns alongside the link matches what is downloaded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, BillFile] = {}

    def issue(
        self, content: bytes, content_type: str, filename: str, ttl: float, path: str = ""
    ) -> str:
        token = secrets.token_urlsafe(24)
        with self._lock:
            now = time.monotonic()
            self._files = {k: v for k, v in self._files.items() if v.expires_at > now}
            self._files[token] = BillFile(content, content_type, filename, now + ttl, path)
        return token

    def get(self, token: str) -> BillFile | None:
        with self._lock:
            found = self._files.get(token)
        if found is None or found.expires_at <= time.monotonic():
            return None
        return found

    def reset(self) -> None:
        with self._lock:
            self._files.clear()


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.faults = Faults(config.seed)
        self.ledger = Ledger()
        self.notifier = Notifier(self.faults)
        self.bills = BillStore()

    @property
    def base_url(self) -> str:
        return self.config.base_url

    def cashier_url(self, channel: str, out_trade_no: str) -> str:
        return f"{self.base_url}/cashier/{channel}/{quote(out_trade_no, safe='')}"

    def start(self) -> None:
        self.notifier.start()

    def stop(self) -> None:
        self.notifier.stop()

    def reset(self) -> None:
        # Notifier first: queued deliveries and refund completions must not act on the new state.
        self.notifier.reset()
        self.ledger.reset()
        self.bills.reset()
        self.faults.reset()
