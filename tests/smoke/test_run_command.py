"""The README's run command as a newcomer meets it: a fresh copy of the tree (no ``.venv``, no
``var/``), ``scripts/run`` making its own venv with the base install only, on its own free ports,
its own database and its own Redis database and key prefix. A shopper pays an order through it,
then Ctrl-C must stop all four processes; and when one of them dies, the run must stop the
others and say which one died.

The copy and its venv are made once per test run (pip's wheel cache makes the install quick
after the first time); the database and Redis keys are dropped at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import requests
from django.conf import settings
from psycopg import sql

from chaos.stack import snapshot_source
from tests.support.sandbox import SandboxControl, free_port
from tests.support.shopper import Shopper

pytestmark = [pytest.mark.smoke, pytest.mark.timeout(900)]

REDIS_DB = 13  # pytest's own stack uses 15 and chaos runs 14
# What a person's shell has; nothing of the test run's own configuration leaks into the stack.
USER_ENV = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TERM", "TMPDIR", "TZ", "CI"}
USER_ENV_PREFIXES = ("LC_", "PIP_", "SSL_CERT_", "XDG_")
FIRST_START_SECONDS = 600.0  # venv + base install + migrations on a loaded 2-core machine
START_SECONDS = 180.0
STOP_SECONDS = 20.0
# Every module the four processes could need, imported with the base install only.
IMPORT_EVERYTHING = """
import importlib, os, pkgutil
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
import django
django.setup()
names = ["kombu.transport.redis", "celery.apps.worker", "celery.apps.beat", "celery.beat",
         "celery.concurrency.prefork", "gunicorn.app.wsgiapp", "gunicorn.workers.gthread"]
for top in ["shop", "orders", "payments", "refunds", "reconciliation", "sandbox", "chaos"]:
    package = importlib.import_module(top)
    names += [m.name for m in pkgutil.walk_packages(package.__path__, top + ".")]
for name in names:
    importlib.import_module(name)
print(f"imported {len(names)} modules")
"""
DEV_ONLY = {"pytest", "pytest-django", "ruff", "mypy", "playwright", "freezegun", "django-stubs"}


@dataclass(frozen=True)
class Scratch:
    """The smoke stack's own database and Redis slice."""

    database_url: str
    redis_url: str
    redis_prefix: str


def _user_env(scratch: Scratch, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in USER_ENV or k.startswith(USER_ENV_PREFIXES)}
    env.update(
        DATABASE_URL=scratch.database_url,
        REDIS_URL=scratch.redis_url,
        REDIS_KEY_PREFIX=scratch.redis_prefix,
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The project as a fresh clone has it: tracked and new files, nothing ignored."""
    root = tmp_path_factory.mktemp("smoke") / "oncepay"
    snapshot_source(root)
    with contextlib.suppress(FileNotFoundError):
        (root / ".env").unlink()  # a developer's own settings are no newcomer's
    yield root
    _kill_leftovers(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Scratch]:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    server = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    # test_<name>_<pid>: scripts/test's preflight drops it if this run dies before it does.
    name = f"test_oncepay_smoke_{os.getpid()}"
    redis_server = settings.REDIS_URL.rsplit("/", 1)[0]
    found = Scratch(
        database_url=f"{server}/{name}",
        redis_url=f"{redis_server}/{REDIS_DB}",
        redis_prefix=f"oncepay-smoke-{secrets.token_hex(4)}",
    )
    yield found
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    client = redis.Redis.from_url(found.redis_url)
    keys = list(client.scan_iter(f"{found.redis_prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


def _stack_processes(root: Path) -> dict[int, str]:
    """Processes running code from the copy, by pid: which of the four each one is."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        line = " ".join(argv)
        if f"{root}/" not in line:
            continue
        for role, marks in {
            "web": ("gunicorn",),
            "worker": ("celery", " worker"),
            "beat": ("celery", " beat"),
            "sandbox": ("run_sandbox",),
        }.items():
            if all(mark in line for mark in marks):
                found[int(entry.name)] = role
    return found


def _kill_leftovers(root: Path) -> None:
    for pid in _stack_processes(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@dataclass
class Run:
    """One ``scripts/run`` in the copy, its output in ``log``."""

    root: Path
    process: subprocess.Popen[bytes]
    log: Path
    shop_url: str
    sandbox_url: str

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def fail(self, what: str) -> None:
        pytest.fail(f"{what}\n--- the last lines of scripts/run ---\n{self.tail()}", pytrace=False)

    def wait_healthy(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: Any = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.fail(
                    f"scripts/run exited with {self.process.returncode} before /healthz was 200"
                )
            try:
                answer = requests.get(f"{self.shop_url}/healthz", timeout=5)
                body = answer.json()
                if answer.status_code == 200:
                    return dict(body)
            except (requests.RequestException, ValueError) as error:
                body = repr(error)
            time.sleep(0.5)
        self.fail(f"/healthz not 200 within {timeout:.0f}s; last answer: {body}")
        raise AssertionError  # unreachable: fail() raises

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"scripts/run still running {timeout:.0f}s after it should have stopped")
            raise

    def assert_all_gone(self, within: float) -> None:
        deadline = time.monotonic() + within
        while (left := _stack_processes(self.root)) and time.monotonic() < deadline:
            time.sleep(0.2)
        if left:
            self.fail(f"still running {within:.0f}s later: {sorted(set(left.values()))}")


def _sigint_as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def scripts_run(root: Path, scratch: Scratch, name: str) -> Iterator[Run]:
    shop_port, sandbox_port = free_port(), free_port()
    log = root.parent / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["bash", "scripts/run"],
            cwd=root,
            env=_user_env(scratch, SHOP_PORT=str(shop_port), SANDBOX_PORT=str(sandbox_port)),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives a command
            # A terminal's command can be stopped with Ctrl-C; a test run started in the
            # background (nohup, `&` in a script, some CI runners) hands its children SIGINT
            # ignored, and bash cannot trap a signal ignored on entry. Restore the default.
            preexec_fn=_sigint_as_from_a_terminal,
        )
    run = Run(
        root, process, log, f"http://127.0.0.1:{shop_port}", f"http://127.0.0.1:{sandbox_port}"
    )
    try:
        yield run
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_SECONDS)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        _kill_leftovers(root)


def test_the_run_command_takes_a_payment_on_a_fresh_tree_and_stops_on_ctrl_c(
    tree: Path, scratch: Scratch, record_property: Any
) -> None:
    started = time.monotonic()
    with scripts_run(tree, scratch, "first-run") as run:
        health = run.wait_healthy(FIRST_START_SECONDS)
        record_property("seconds_to_healthy_from_nothing", round(time.monotonic() - started, 1))
        assert health["failing"] == [] and health["checks"]["worker"]["alive"] >= 1, health
        roles = sorted(_stack_processes(tree).values())
        for role in ("beat", "sandbox", "web", "worker"):
            if role not in roles:
                run.fail(f"{role} is not running (found {roles})")

        # The venv scripts/run made holds the base install only, and it is enough.
        python = str(tree / ".venv" / "bin" / "python")
        listed = subprocess.run(
            [python, "-m", "pip", "list", "--format=freeze"],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
        installed = {line.split("==")[0].lower() for line in listed.split()}
        assert not DEV_ONLY & installed, f"dev packages in the base venv: {DEV_ONLY & installed}"
        env = _user_env(scratch)
        for argv in ([python, "-c", IMPORT_EVERYTHING], [python, "manage.py", "check"]):
            result = subprocess.run(
                argv, cwd=tree, env=env, capture_output=True, text=True, timeout=180
            )
            assert result.returncode == 0, result.stdout + result.stderr

        # A shopper: an order over the JSON API, apply-pay (PC QR), paid at the sandbox.
        products = requests.get(f"{run.shop_url}/api/v1/products/", timeout=10).json()
        sku = next(p["sku"] for p in products if p["stock"] > 0)
        shopper = Shopper(run.shop_url)
        order = shopper.order(sku=sku)
        assert order["status"] == "unpaid"
        applied = shopper.pay("alipay", "pc")
        assert applied.status_code in (200, 201), applied.text
        attempt = applied.json()
        assert attempt["action"]["type"] == "qr"
        paid = SandboxControl(run.sandbox_url).pay("alipay", attempt["out_trade_no"])
        assert paid.status_code == 200, paid.text
        deadline = time.monotonic() + 60
        while (status := shopper.view()["status"]) != "paid":
            if time.monotonic() > deadline:
                run.fail(f"order still {status} 60 s after the sandbox took the payment")
            time.sleep(0.5)

        # Ctrl-C, as a terminal sends it: to the command's process group.
        os.killpg(run.process.pid, signal.SIGINT)
        stopping = time.monotonic()
        code = run.wait_exit(STOP_SECONDS)
        run.assert_all_gone(within=STOP_SECONDS - (time.monotonic() - stopping))
        record_property("seconds_to_stop", round(time.monotonic() - stopping, 1))
        assert code == 130, run.tail()
        assert "==> stopping" in run.tail()


def _main_pid(root: Path, role: str) -> int:
    """The process of ``role`` whose parent is not one of its own (a pool's or master's)."""
    pids = {pid for pid, found in _stack_processes(root).items() if found == role}
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent not in pids:
            return pid
    raise AssertionError(f"no {role} process")


def test_the_run_command_stops_everything_when_one_process_dies(
    tree: Path, scratch: Scratch
) -> None:
    victim = "worker"  # the one with pool children, left orphaned when it dies
    with scripts_run(tree, scratch, f"{victim}-dies") as run:
        run.wait_healthy(START_SECONDS)
        os.kill(_main_pid(tree, victim), signal.SIGKILL)  # as in a crash
        code = run.wait_exit(STOP_SECONDS + 5)
        run.assert_all_gone(within=5)
        assert code != 0
        output = run.tail(100)
        assert f"==> {victim} exited (status 137)" in output, output
        assert "Its last lines" in output and "==> stopping the others" in output
        assert f"var/log/{victim}-" in output
