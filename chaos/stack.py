"""A private stack for one chaos run: its own database, Redis key prefix and ports.

Nothing here may touch a developer's stack: the database is created for the run and dropped at
the end, Redis keys carry a per-run prefix on a separate database number, and every process
listens on a free loopback port. Each process runs in its own process group so that a fault can
SIGKILL it (and its pool children) without touching anything else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

from chaos.clients import ShopApi

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_SECONDS = 15.0
# The whole stack healthy, worker and beat included, on a loaded machine.
START_TIMEOUT_SECONDS = 120.0
# Chaos orders never run out of stock: stock is not what these runs are about, and a revival
# within the grace period needs stock to be taken again.
CHAOS_STOCK = 1_000_000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class StackSettings:
    """What differs between runs. Times are short so that expiry and healing happen in-run."""

    workers: int = 2
    worker_concurrency: int = 4
    order_ttl_seconds: int = 25
    poll_schedule: str = "1,2,3,5,8"
    sweep_interval_seconds: int = 1
    gateway_read_timeout: float = 2.0
    late_payment_grace_seconds: int = 5
    notify_schedule: str = "1,2,3"
    lock_enabled: bool = True
    lock_ttl_seconds: float = 30.0
    redis_db: int = 14
    seed: int = 0

    def shop_env(self) -> dict[str, str]:
        return {
            "ORDER_TTL_SECONDS": str(self.order_ttl_seconds),
            "PAYMENT_POLL_SCHEDULE": self.poll_schedule,
            "SWEEP_INTERVAL_SECONDS": str(self.sweep_interval_seconds),
            "GATEWAY_READ_TIMEOUT": str(self.gateway_read_timeout),
            "GATEWAY_CONNECT_TIMEOUT": "2",
            "LATE_PAYMENT_GRACE_SECONDS": str(self.late_payment_grace_seconds),
            "PAYMENT_LOCK_ENABLED": "1" if self.lock_enabled else "0",
            "PAYMENT_LOCK_TTL_SECONDS": str(self.lock_ttl_seconds),
            "RATE_LIMIT_ORDER_CREATE": "100000/min",
            "RATE_LIMIT_APPLY_PAY": "100000/min",
            "RATE_LIMIT_STATUS": "100000/min",
            # A task lost with a SIGKILLed worker comes back this soon (the longest countdown
            # we schedule is the first poll step, far below it).
            "CELERY_VISIBILITY_TIMEOUT": "30",
            "LOG_LEVEL": "INFO",
        }


def snapshot_source(dest: Path) -> str:
    """Copy the working tree (tracked and untracked files, not ignored ones) into ``dest``.

    The run's processes import the snapshot, so edits made to the tree while a run goes on
    (someone else's half-saved change) cannot break it, and every restart runs the same code.
    Returns what was copied, e.g. ``"3f2a1bc + uncommitted changes"``.
    """
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    for raw in listing.split(b"\0"):
        name = raw.decode()
        source = REPO_ROOT / name
        if not name or name.startswith("var/") or not source.is_file():
            continue  # var/ holds local secrets, read in place; deleted files are listed too
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    if (REPO_ROOT / ".env").is_file():
        shutil.copy2(REPO_ROOT / ".env", dest / ".env")
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    return f"{head or 'unknown'}{' + uncommitted changes' if dirty else ''}"


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path = REPO_ROOT
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches pool children too
        )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash or the OOM killer would."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._reap()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM the group (graceful shutdown), then SIGKILL what is left after ``timeout``."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in %.0fs; killing", self.name, timeout)
        # Pool children may outlive their parent; the group id still names them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self.process is not None:
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                logger.error("%s (pid %s) would not die", self.name, self.process.pid)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.process = None

    def children(self) -> list[int]:
        """Direct children (gunicorn's workers) from /proc; empty where /proc is missing."""
        if self.process is None:
            return []
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except (OSError, ValueError):
            return []


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


@dataclass
class ChaosDatabase:
    """A database made for the run from the connection details of ``base_url``."""

    base_url: str
    name: str = field(default_factory=lambda: f"oncepay_chaos_{secrets.token_hex(4)}")

    @property
    def url(self) -> str:
        return _with_path(self.base_url, f"/{self.name}")

    def _admin(self) -> psycopg.Connection:
        # Connect to the maintenance database: you cannot create or drop the one you are in.
        return psycopg.connect(_with_path(self.base_url, "/postgres"), autocommit=True)

    def create(self) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))

    def drop(self) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )

    def gateway_trouble(self) -> dict[str, int]:
        """Gateway calls that got no usable answer, as the shop recorded them, by call and cause
        (``query/timeout``, ``close/http_502``...), plus refund submissions: how the sandbox's
        request faults looked from the inside. For the report only; the checks use HTTP."""
        counts: dict[str, int] = {}
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT kind, split_part(split_part(rejection, ':', 1), ' ', 1), count(*)"
                    " FROM payments_gatewayevent WHERE outcome = 'unknown' GROUP BY 1, 2"
                ).fetchall()
                counts.update({f"{kind}/{why or 'unknown'}": int(n) for kind, why, n in rows})
                refunds = conn.execute(
                    "SELECT count(*), coalesce(sum(submissions), 0) FROM refunds_refund"
                ).fetchone()
                if refunds is not None:
                    counts["refund_submissions"] = int(refunds[1])
                    counts["refunds"] = int(refunds[0])
        except psycopg.Error:
            logger.warning("could not read gateway trouble from the run's database", exc_info=True)
        return dict(sorted(counts.items()))

    def give_stock(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("UPDATE shop_product SET stock = %s", (CHAOS_STOCK,))


@dataclass
class ChaosRedis:
    """The run's slice of Redis: one database number and one key prefix."""

    base_url: str
    db: int
    prefix: str = field(default_factory=lambda: f"oncepay-chaos-{secrets.token_hex(4)}")

    @property
    def url(self) -> str:
        return _with_path(self.base_url, f"/{self.db}")

    def forget(self) -> int:
        """Delete every key of this run: locks, dedupe windows, paid cache, queued tasks.

        The shared Redis server is not ours to restart, so "Redis restarted" is simulated by
        losing all of the run's state at once (the same effect on the shop), and nothing else.
        """
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            deleted = 0
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{self.prefix}:*", count=500):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(client.delete(*batch))
            return deleted
        finally:
            client.close()


class ChaosStack:
    """Web (gunicorn gthread), Celery worker (prefork), Celery beat and the sandbox."""

    def __init__(
        self,
        settings: StackSettings,
        *,
        database_url: str,
        redis_url: str,
        log_dir: Path | None = None,
        snapshot: bool = True,
    ) -> None:
        self.settings = settings
        self.database = ChaosDatabase(database_url)
        self.redis = ChaosRedis(redis_url, settings.redis_db)
        self.shop_port = free_port()
        self.sandbox_port = free_port()
        self.shop_url = f"http://127.0.0.1:{self.shop_port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}"
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="oncepay-chaos-"))
        self.snapshot = snapshot
        self.source_dir = REPO_ROOT
        self.source = "working tree (in place)"
        self.web: Proc | None = None
        self.worker: Proc | None = None
        self.beat: Proc | None = None
        self.extra_beat: Proc | None = None
        self.sandbox: Proc | None = None
        # Settings of the current lock phase, applied to every (re)start of web and worker.
        self.overrides: dict[str, str] = {}
        self._db_created = False
        self._generation = 0  # names restarted processes' logs and beat schedule files

    # --- environment ---------------------------------------------------------------------

    def env(self, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        # Under pytest settings.py would pick the test Redis; the run names its own instead.
        env.pop("PYTEST_VERSION", None)
        # Local credentials stay where they are; a snapshot of the source has none.
        env.setdefault("ONCEPAY_VAR_DIR", str(REPO_ROOT / "var"))
        env.update(self.settings.shop_env())
        env.update(
            {
                "DATABASE_URL": self.database.url,
                "REDIS_URL": self.redis.url,
                "REDIS_KEY_PREFIX": self.redis.prefix,
                "SHOP_PORT": str(self.shop_port),
                "SANDBOX_PORT": str(self.sandbox_port),
                "SHOP_BASE_URL": self.shop_url,
                "SANDBOX_BASE_URL": self.sandbox_url,
                "SANDBOX_NOTIFY_SCHEDULE": self.settings.notify_schedule,
                "SANDBOX_SEED": str(self.settings.seed),
                "PYTHONUNBUFFERED": "1",
                # The run's own metrics directory (/metrics adds up web and worker in it).
                "PROMETHEUS_MULTIPROC_DIR": str(self.log_dir / "metrics"),
            }
        )
        env.update(overrides or {})
        return env

    def _manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.source_dir,
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=120,
        )

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.snapshot:
            try:
                self.source = "snapshot of " + snapshot_source(self.log_dir / "src")
                self.source_dir = self.log_dir / "src"
            except (OSError, subprocess.SubprocessError):
                logger.warning("no snapshot of the source (no git?); running in place")
        self.database.create()
        self._db_created = True
        self._manage("migrate", "--no-input", "-v0")
        self._manage("seed_demo")
        self.database.give_stock()
        self.sandbox = self._proc(
            "sandbox",
            [sys.executable, "manage.py", "run_sandbox", "--port", str(self.sandbox_port)],
            self.env(),
        )
        self.sandbox.start()
        self.start_web()
        self.start_worker()
        self.beat = self._beat_proc("beat")
        self.beat.start()
        self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT_SECONDS, *, web_only: bool = False) -> None:
        """Until /healthz is 200 (the whole stack) and the sandbox listens. ``web_only``: a web
        that answers is enough, whatever /healthz says of a worker or beat still starting."""
        shop = ShopApi(self.shop_url)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                health = shop.health()
                failing = health.body.get("failing", []) if isinstance(health.body, dict) else []
                web_up = health.status == 200 or (
                    health.status == 503 and set(failing) <= {"worker", "beat"}
                )
                if (health.status == 200 or (web_only and web_up)) and self._sandbox_up():
                    return
                for proc in (self.web, self.sandbox):
                    if proc is not None and not proc.alive:
                        raise RuntimeError(f"{proc.name} exited; see {proc.log_path}")
                time.sleep(0.3)
        finally:
            shop.close()
        raise RuntimeError(f"stack not ready within {timeout:.0f}s; logs in {self.log_dir}")

    def _sandbox_up(self) -> bool:
        s = socket.socket()
        s.settimeout(1)
        try:
            return s.connect_ex(("127.0.0.1", self.sandbox_port)) == 0
        finally:
            s.close()

    def stop(self, *, keep_database: bool = False) -> None:
        for proc in (self.extra_beat, self.beat, self.worker, self.web, self.sandbox):
            if proc is not None:
                proc.stop()
        try:
            self.redis.forget()
        except redis.RedisError:
            logger.warning("could not clean the run's Redis keys", exc_info=True)
        if self._db_created and not keep_database:
            self.database.drop()

    # --- processes -----------------------------------------------------------------------

    def _proc(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        self._generation += 1
        log = self.log_dir / f"{name}-{self._generation}.log"
        return Proc(name, argv, env, log, self.source_dir)

    def start_web(self) -> None:
        self.web = self._proc(
            "web",
            [
                *(sys.executable, "-m", "gunicorn", "shop.wsgi:application"),
                *f"--bind 127.0.0.1:{self.shop_port} --workers {self.settings.workers}".split(),
                *[
                    "--worker-class",
                    "gthread",
                    "--threads",
                    "8",
                    "--timeout",
                    "60",
                    "--graceful-timeout",
                    "10",
                ],
            ],
            self.env(self.overrides),
        )
        self.web.start()

    def start_worker(self) -> None:
        self.worker = self._proc(
            "worker",
            [
                *(sys.executable, "-m", "celery", "-A", "shop", "worker"),
                *f"--pool prefork --concurrency {self.settings.worker_concurrency}".split(),
                *[
                    "--loglevel",
                    "INFO",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                *("-n", f"{self.redis.prefix}-{self._generation}@%h"),
            ],
            self.env(self.overrides),
        )
        self.worker.start()

    def _beat_proc(self, name: str) -> Proc:
        schedule = self.log_dir / f"{name}-schedule-{self._generation + 1}"
        return self._proc(
            name,
            [
                *(sys.executable, "-m", "celery", "-A", "shop", "beat"),
                *("--loglevel", "INFO", "--schedule", str(schedule)),
            ],
            self.env(),
        )

    def restart_app(self, overrides: Mapping[str, str]) -> None:
        """Restart web and worker with other settings (a lock phase). Beat only schedules."""
        if self.web is not None:
            self.web.stop()
        if self.worker is not None:
            self.worker.stop()
        self.overrides = dict(overrides)
        self.start_web()
        self.start_worker()
        # The timeline goes on as soon as the web answers; a worker slow to start on a loaded
        # machine is one more fault the run must heal from, not a reason to stall the faults.
        self.wait_ready(web_only=True)

    def kill_worker(self) -> None:
        if self.worker is not None:
            self.worker.kill()

    def restart_worker(self) -> None:
        self.start_worker()

    def kill_web_worker(self, rng_pick: int) -> int | None:
        """SIGKILL one gunicorn worker mid-request; the master forks a new one."""
        if self.web is None:
            return None
        children = self.web.children()
        if not children:
            return None
        pid = children[rng_pick % len(children)]
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return pid

    def start_extra_beat(self) -> None:
        """A second beat scheduler, as after a bad deploy: every sweep runs twice."""
        self.extra_beat = self._beat_proc("beat-extra")
        self.extra_beat.start()

    def stop_extra_beat(self) -> None:
        if self.extra_beat is not None:
            self.extra_beat.stop()
            self.extra_beat = None
