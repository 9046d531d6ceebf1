"""Starting the real Celery worker and beat against the test database, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


@dataclass
class CeleryProcesses:
    env: dict[str, str]
    worker: subprocess.Popen[bytes] | None = None
    beat: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start_worker(self, concurrency: int = 2) -> None:
        log = ROOT / "var" / f"test-worker-{os.getpid()}.log"
        self.logs.append(log)
        self.worker = subprocess.Popen(
            [
                CELERY,
                "-A",
                "shop",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"test-{os.getpid()}-{time.time_ns()}@%h",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_beat(self) -> None:
        log = ROOT / "var" / f"test-beat-{os.getpid()}.log"
        self.logs.append(log)
        schedule = ROOT / "var" / f"test-beat-schedule-{os.getpid()}"
        self.beat = subprocess.Popen(
            [CELERY, "-A", "shop", "beat", "--loglevel", "INFO", "--schedule", str(schedule)],
            cwd=ROOT,
            env=self.env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill_worker(self, sig: int = signal.SIGKILL) -> None:
        """Kill the worker's whole process group (main process and pool children)."""
        if self.worker is not None:
            os.killpg(self.worker.pid, sig)
            self.worker.wait(timeout=30)
            self.worker = None

    def stop(self) -> None:
        for proc in (self.worker, self.beat):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        self.worker = self.beat = None


def stack_env(
    *, database_name: str, shop_base_url: str, sandbox_base_url: str, **extra: str
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database_name}",
            "SHOP_BASE_URL": shop_base_url,
            "SANDBOX_BASE_URL": sandbox_base_url,
            "PYTEST_VERSION": os.environ.get("PYTEST_VERSION", "1"),
        }
    )
    env.update(extra)
    return env
