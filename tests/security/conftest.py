"""A real gunicorn, started as the README's run command starts it (gthread, 2 workers × 8
threads, gunicorn.conf.py from the project root), on the test database: what an attacker meets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.stack import ROOT, stack_env


@dataclass
class ShopServer:
    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def shop_server(
    django_db_setup: Any,
    django_db_blocker: Any,
    sandbox_process: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ShopServer]:
    from tests.conftest import _database_url

    with django_db_blocker.unblock():
        database_url = _database_url()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = stack_env(database_name="", shop_base_url=url, sandbox_base_url=sandbox_process.base_url)
    env["DATABASE_URL"] = database_url
    # Its own metrics directory: gunicorn's master empties the directory it is given when it
    # starts, and this run's directory holds the files the test process itself writes to.
    metrics_dir = tmp_path_factory.mktemp("gunicorn-metrics")
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    log = ROOT / "var" / f"test-gunicorn-{os.getpid()}.log"
    log.parent.mkdir(exist_ok=True)
    log.write_bytes(b"")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "shop.wsgi:application"),
            *f"--bind 127.0.0.1:{port} --workers 2 --worker-class gthread --threads 8".split(),
            *("--timeout", "90", "--access-logfile", "-"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{url}/api/v1/products/", timeout=2)
            break
        except requests.RequestException:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.3)
    yield ShopServer(url=url, log=log, process=process)
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def api_order(base: str, sku: str, *, price: int = 1500, stock: int = 1000) -> tuple[str, str]:
    """A product, and an order of it made through the JSON API: (order id, access token)."""
    from tests.conftest import make_product

    make_product(sku, price=price, stock=stock)
    created = requests.post(
        f"{base}/api/v1/orders/",
        json={"items": [{"sku": sku, "quantity": 1}], "email": "shopper@example.com"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["access_token"]
