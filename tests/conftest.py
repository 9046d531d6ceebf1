"""Shared fixtures: the real PostgreSQL (pytest-django's test database), the real Redis (its own
database number and key prefix under pytest), the sandbox gateway over HTTP, and — for
end-to-end tests — a real Celery worker and beat as separate processes."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django_redis import get_redis_connection

from shop.models import Product


def _retry_flush_on_deadlock() -> None:
    """Tests with real commits end with a flush (TRUNCATE of every table). While the session's
    Celery worker and beat run, that TRUNCATE can deadlock with one of their short transactions;
    PostgreSQL aborts one side, and a retry of the flush is all it takes."""
    import time

    from django.core.management.base import CommandError
    from django.db import OperationalError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown

    def teardown(self: TransactionTestCase) -> None:
        for attempt in range(5):
            try:
                original(self)
                return
            except (CommandError, OperationalError) as error:
                cause = error.__cause__ or error
                if attempt == 4 or "deadlock" not in str(cause).lower():
                    raise
                time.sleep(0.2 * (attempt + 1))

    TransactionTestCase._fixture_teardown = teardown  # type: ignore[method-assign]


_retry_flush_on_deadlock()


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    """Each test starts with no locks, dedupe windows or paid-result cache left over."""
    client = get_redis_connection("default")
    for key in client.scan_iter(f"{settings.REDIS_KEY_PREFIX}:*"):
        if b":celery:" not in key:
            client.delete(key)
    yield


@pytest.fixture(scope="session")
def sandbox_process() -> Iterator[Any]:
    from tests.support.sandbox import start_sandbox

    proc = start_sandbox(extra_env={"SANDBOX_NOTIFY_SCHEDULE": "1,1,2,3"})
    yield proc
    proc.stop()


@pytest.fixture
def sandbox(sandbox_process: Any) -> Any:
    from tests.support.sandbox import SandboxControl

    control = SandboxControl(sandbox_process.base_url)
    control.reset()
    return control


@pytest.fixture
def gateways_at_sandbox(settings: Any, sandbox: Any, live_server: Any) -> Any:
    """Point the shop's gateway configuration and callback URLs at the live sandbox and server."""
    gateways = copy.deepcopy(settings.PAYMENT_GATEWAYS)
    gateways["alipay"]["GATEWAY_URL"] = f"{sandbox.base_url}/gateway.do"
    gateways["wechat"]["BASE_URL"] = sandbox.base_url
    settings.PAYMENT_GATEWAYS = gateways
    settings.SHOP_BASE_URL = live_server.url
    settings.SANDBOX_BASE_URL = sandbox.base_url
    return sandbox


def _database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture(scope="session")
def celery_stack(
    django_db_setup: Any, django_db_blocker: Any, live_server: Any, sandbox_process: Any
) -> Iterator[Any]:
    """A real Celery worker and beat on the test database (started once, kept for the session)."""
    from tests.support.stack import CeleryProcesses, stack_env

    with django_db_blocker.unblock():
        url = _database_url()
    env = stack_env(
        database_name="",
        shop_base_url=live_server.url,
        sandbox_base_url=sandbox_process.base_url,
        # A capture after the deadline is refunded rather than revived, so tests see the refund.
        LATE_PAYMENT_GRACE_SECONDS="0",
    )
    env["DATABASE_URL"] = url
    processes = CeleryProcesses(env=env)
    processes.start_worker()
    processes.start_beat()
    yield processes
    processes.stop()


@pytest.fixture
def stack(transactional_db: Any, gateways_at_sandbox: Any, celery_stack: Any) -> Any:
    """Everything real: committed transactions, live server, sandbox, Celery worker and beat."""
    if celery_stack.worker is None:
        celery_stack.start_worker()
    return celery_stack


def make_product(
    sku: str = "TEA-1", *, price: int = 1999, stock: int = 100, currency: str = "CNY"
) -> Product:
    return Product.objects.create(
        sku=sku, name=f"Product {sku}", price_amount=price, stock=stock, currency=currency
    )


@pytest.fixture
def product(db: Any) -> Product:
    return make_product()
