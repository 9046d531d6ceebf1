"""Processes a benchmark serves from: gunicorn started exactly as ``scripts/run`` starts the web
(same worker class, workers, threads and timeouts, the project's ``gunicorn.conf.py``), on a free
port, stopped at the end; and what they cost (CPU seconds, peak RSS) read from ``/proc``."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from shop.bench.core import peak_rss_mb

ROOT = Path(__file__).resolve().parents[2]
# The web as scripts/run starts it (keep in step with that script).
GUNICORN_FLAGS = [
    "--workers",
    os.environ.get("WEB_WORKERS", "2"),
    "--worker-class",
    "gthread",
    "--threads",
    "8",
    "--timeout",
    "90",
    "--graceful-timeout",
    "8",
    "--access-logfile",
    "-",
]
START_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Served:
    """A running gunicorn: its address and its processes."""

    url: str
    process: subprocess.Popen[bytes]

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def cpu_seconds(self) -> float:
        """CPU time (user + system) its workers (and the master) have used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in [self.process.pid, *self.worker_pids()]:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def peak_rss_mb(self) -> float | None:
        return peak_rss_mb(self.worker_pids())


@contextlib.contextmanager
def gunicorn(
    app: str, *, env: dict[str, str], log: IO[bytes], port: int | None = None
) -> Iterator[Served]:
    """``app`` served as scripts/run serves the web, on ``port`` (a free one if not given: pass
    one when the app must know its own address before it starts)."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            app,
            "--bind",
            f"127.0.0.1:{port}",
            *GUNICORN_FLAGS,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    served = Served(f"http://127.0.0.1:{port}", process)
    try:
        wait_until_answering(f"{served.url}/", process)
        yield served
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not gone within 15 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_answering(url: str, process: subprocess.Popen[bytes]) -> None:
    """Until ``url`` gives any HTTP answer; fails if the process exits or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} at start")
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 (our own http URL)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it serves
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {START_TIMEOUT_SECONDS:.0f}s")


@contextlib.contextmanager
def celery_worker(*, env: dict[str, str], log: IO[bytes]) -> Iterator[Served]:
    """The Celery worker as scripts/run starts it; ``cpu_seconds`` counts its pool too."""
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("celery")),
            "-A",
            "shop",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            os.environ.get("WORKER_CONCURRENCY", "4"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield Served("", process)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
