"""Start the sandbox gateway as a real process and drive its control API.

Other suites import these names; keep them stable::

    proc = start_sandbox(extra_env={"SANDBOX_NOTIFY_SCHEDULE": "1,1,1"})
    control = SandboxControl(proc.base_url)
    control.set_faults(notify_drop=1)
    control.pay("alipay", "A123")
    control.trade("A123")["status"]  # "PAID"
    proc.stop()
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def _python() -> str:
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment must never see loopback traffic
    return session


@dataclass
class SandboxProcess:
    base_url: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)

    def log(self) -> str:
        """What the sandbox printed so far (for assertion messages)."""
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox(
    port: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
) -> SandboxProcess:
    """Launch ``manage.py run_sandbox`` and wait until ``GET /sandbox/faults`` answers.

    Without ``port``, a free one is picked (and retried if someone grabs it first).
    """
    attempts = 1 if port is not None else 3
    last_error = ""
    for _ in range(attempts):
        chosen = port if port is not None else free_port(host)
        env = dict(os.environ)
        env.update(extra_env or {})
        log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the process
            prefix=f"sandbox-{chosen}-", suffix=".log", delete=False
        )
        process = subprocess.Popen(
            [_python(), "manage.py", "run_sandbox", "--host", host, "--port", str(chosen)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        proc = SandboxProcess(f"http://{host}:{chosen}", chosen, process, Path(log.name))
        deadline = time.monotonic() + timeout
        with _session() as session:
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    if session.get(f"{proc.base_url}/sandbox/faults", timeout=1).status_code == 200:
                        return proc
                except requests.RequestException:
                    pass
                time.sleep(0.1)
        proc.stop()
        last_error = proc.log()[-2000:]
    raise RuntimeError(f"sandbox did not start:\n{last_error}")


class SandboxControl:
    """A small client for the sandbox's control API (contract.md)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http = _session()

    def _url(self, path: str) -> str:
        return self.base_url + path

    def reset(self) -> None:
        self._http.post(self._url("/sandbox/reset"), timeout=self.timeout).raise_for_status()

    def set_faults(self, **faults: float) -> dict[str, float]:
        response = self._http.post(self._url("/sandbox/faults"), json=faults, timeout=self.timeout)
        response.raise_for_status()
        result: dict[str, float] = response.json()
        return result

    def faults(self) -> dict[str, float]:
        response = self._http.get(self._url("/sandbox/faults"), timeout=self.timeout)
        response.raise_for_status()
        result: dict[str, float] = response.json()
        return result

    def pay(self, channel: str, out_trade_no: str) -> requests.Response:
        """The shopper pays. Returns the raw response: 200 paid, 404 unknown, 409 refused."""
        return self._http.post(
            self._url("/sandbox/pay"),
            json={"channel": channel, "out_trade_no": out_trade_no},
            timeout=self.timeout,
        )

    def ledger(self, out_trade_no: str | None = None) -> dict[str, Any]:
        params = {"out_trade_no": out_trade_no} if out_trade_no is not None else None
        response = self._http.get(self._url("/sandbox/ledger"), params=params, timeout=self.timeout)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def trade(self, out_trade_no: str) -> dict[str, Any] | None:
        trades = self.ledger(out_trade_no)["trades"]
        return trades[0] if trades else None

    def notifications(self, out_trade_no: str | None = None) -> list[dict[str, Any]]:
        params = {"out_trade_no": out_trade_no} if out_trade_no is not None else None
        response = self._http.get(
            self._url("/sandbox/notifications"), params=params, timeout=self.timeout
        )
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["notifications"]
        return items

    def wait_until(
        self, probe: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.1
    ) -> T:
        """Poll ``probe`` until it returns something truthy; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError("condition not met in time")
            time.sleep(interval)
