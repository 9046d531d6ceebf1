"""Starting the real Celery worker and beat against the test database, for end-to-end tests.

Only tests that ask for them (the ``stack`` fixture) get them: ``tests/conftest.py`` stops them
before any other test, so a test that calls a sweep or a service directly is never raced by a
background worker or beat it did not ask for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
READY_TIMEOUT_SECONDS = 60.0


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class CeleryProcesses:
    env: dict[str, str]
    worker: subprocess.Popen[bytes] | None = None
    beat: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)
    _files: list[IO[bytes]] = field(default_factory=list)

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        (ROOT / "var").mkdir(exist_ok=True)
        log = ROOT / "var" / f"test-{name}-{os.getpid()}.log"
        self.logs.append(log)
        out = log.open("ab")
        self._files.append(out)
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it reaches its pool children
        )

    def start_worker(self, concurrency: int = 2) -> None:
        self.worker = self._start(
            "worker",
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
        )

    def start_beat(self) -> None:
        schedule = ROOT / "var" / f"test-beat-schedule-{os.getpid()}-{time.time_ns()}"
        self.beat = self._start(
            "beat",
            [CELERY, "-A", "shop", "beat", "--loglevel", "INFO", "--schedule", str(schedule)],
        )

    @property
    def running(self) -> bool:
        return any(p is not None and p.poll() is None for p in (self.worker, self.beat))

    def ensure_running(self) -> None:
        """Start whichever of worker and beat is not running, and wait until both are live.

        Starting from nothing, the queue is purged first: tasks queued by tests that ran
        without a worker belong to rows long gone and to no test that is still running.
        """
        if self.worker is not None and self.worker.poll() is not None:
            self.worker = None
        if self.beat is not None and self.beat.poll() is not None:
            self.beat = None
        if self.worker is None and self.beat is None:
            from shop.celery import app

            app.control.purge()
        if self.worker is None:
            self.start_worker()
        if self.beat is None:
            self.start_beat()
        self.wait_live()

    def wait_live(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Until the worker and beat have marked themselves alive (what /healthz reads)."""
        from shop.health import liveness_read

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in (self.worker, self.beat):
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(
                        f"celery exited with {proc.returncode}:\n"
                        + "\n".join(_tail(log) for log in self.logs[-2:])
                    )
            found = liveness_read()
            if found["worker"].alive and found["beat"].alive:
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"worker and beat not live within {timeout:.0f}s:\n"
            + "\n".join(_tail(log) for log in self.logs[-2:])
        )

    def kill_worker(self, sig: int = signal.SIGKILL) -> None:
        """Kill the worker's whole process group (main process and pool children)."""
        if self.worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.worker.pid, sig)
            self.worker.wait(timeout=30)
            self.worker = None

    def stop(self) -> None:
        """Stop worker and beat (warm shutdown, then SIGKILL) and wait until they are gone."""
        procs = [p for p in (self.worker, self.beat) if p is not None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
            # Pool children may outlive their parent; the group id still names them.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        self.worker = self.beat = None
        for out in self._files:
            out.close()
        self._files.clear()


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
