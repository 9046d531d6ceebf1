"""Shared fixtures: the real PostgreSQL (pytest-django's test database), the real Redis (its own
database number and key prefix under pytest), the sandbox gateway over HTTP, and — for
end-to-end tests that ask for it with the ``stack`` fixture — a real Celery worker and beat as
separate processes.

The worker and beat run only while such tests run: before every other test they are stopped,
so a test that calls a sweep or a service directly, or counts what one claimed, is never raced
by background processes it did not ask for. Tests that use them are run last (in their own
order), so the session starts them once rather than once per module.
"""

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
    """Tests with real commits end with a flush (TRUNCATE of every table). While the stack's
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


# The session's worker and beat, once the ``celery_stack`` fixture has made them.
_celery: list[Any] = []


def _wants_stack(item: pytest.Item) -> bool:
    return "celery_stack" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need the worker and beat run after all others (a stable move), so they are
    started once per session; pytest-django has already ordered the rest by database use."""
    items.sort(key=_wants_stack)


@pytest.fixture(autouse=True)
def _isolated(request: pytest.FixtureRequest) -> Iterator[None]:
    """No background worker or beat unless the test asked for them, and each test starts with
    no locks, dedupe windows or paid-result cache left over."""
    wants_stack = _wants_stack(request.node)
    if not wants_stack:
        for processes in _celery:
            processes.stop()
    client = get_redis_connection("default")
    for key in client.scan_iter(f"{settings.REDIS_KEY_PREFIX}:*"):
        # Queued tasks stay; so do the liveness marks of a worker and beat the test asked for.
        if b":celery:" not in key and not (wants_stack and b":health:" in key):
            client.delete(key)
    yield


@pytest.fixture(scope="session", autouse=True)
def _drop_redis_keys_at_the_end() -> Iterator[None]:
    """The run's key prefix is its own: leave nothing of it behind in Redis."""
    yield
    client = get_redis_connection("default")
    keys = list(client.scan_iter(f"{settings.REDIS_KEY_PREFIX}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


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
    """A real Celery worker and beat on the test database, started by ``stack`` when a test
    needs them and stopped before any test that does not."""
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
    _celery.append(processes)
    yield processes
    processes.stop()
    _celery.remove(processes)


@pytest.fixture
def stack(transactional_db: Any, gateways_at_sandbox: Any, celery_stack: Any) -> Any:
    """Everything real: committed transactions, live server, sandbox, Celery worker and beat
    (started if they are not running, and live — marked so in Redis — before the test)."""
    celery_stack.ensure_running()
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
