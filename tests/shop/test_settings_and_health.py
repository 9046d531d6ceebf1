from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import Client

from tests.support.shopper import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy_without_warnings() -> None:
    from tests.security.production_env import production_env

    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        # Production needs the gateway credentials too (issue 13).
        **{
            **production_env(),
            "DEBUG": "0",
            "HTTPS": "1",
            "REQUIRE_SECRET_KEY": "1",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "ALLOWED_HOSTS": "shop.example.com",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key() -> None:
    result = _manage("check", DEBUG="0", REQUIRE_SECRET_KEY="1", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_requests_are_never_atomic() -> None:
    from django.conf import settings

    assert settings.DATABASES["default"]["ATOMIC_REQUESTS"] is False


ALL_CHECKS = ["database", "redis", "broker", "worker", "beat"]


def _health(client: Client) -> tuple[int, dict]:
    response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def test_health_is_ok_only_with_a_live_worker_and_a_ticking_beat(stack, client: Client) -> None:
    status, body = _health(client)
    assert status == 200, body
    assert body["status"] == "ok" and body["failing"] == []
    assert list(body["checks"]) == ALL_CHECKS
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["worker"]["alive"] == 1 and body["checks"]["beat"]["alive"] == 1
    assert body["needs_attention"] == 0


@pytest.mark.django_db
def test_health_without_a_worker_or_beat_is_503_naming_them(client: Client) -> None:
    status, body = _health(client)
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["failing"] == ["worker", "beat"]  # database, Redis and the broker answer
    assert body["checks"]["worker"] == {
        "ok": False,
        "alive": 0,
        "last_seen_seconds": None,
        "detail": "no live worker marked in the last 10 s",
    }


def test_health_names_a_worker_that_stopped_and_one_that_died(stack, client: Client) -> None:
    stack.stop()  # warm shutdown: both take their marks back at once
    status, body = _health(client)
    assert status == 503 and body["failing"] == ["worker", "beat"]
    stack.ensure_running()
    assert _health(client)[0] == 200
    stack.kill_worker()  # SIGKILL: no goodbye, the mark goes stale
    assert _health(client)[0] == 200  # not stale yet
    wait_for(lambda: _health(client)[1]["failing"] == ["worker"], timeout=20, interval=0.5)
    stack.ensure_running()
    assert _health(client)[0] == 200


@pytest.mark.django_db
def test_health_counts_only_fresh_marks(client: Client, settings) -> None:
    from shop.health import liveness_mark

    liveness_mark(component="worker", member="w1")
    liveness_mark(component="beat", member="b1")
    status, body = _health(client)
    assert status == 200, body
    settings.HEALTH_STALE_SECONDS = 0  # the same marks, now too old to count
    time.sleep(0.05)
    status, body = _health(client)
    assert status == 503 and body["failing"] == ["worker", "beat"]
    assert body["checks"]["beat"]["last_seen_seconds"] is not None


@pytest.mark.django_db
def test_health_names_what_is_down(client: Client, settings) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    started = time.monotonic()
    status, body = _health(client)
    assert status == 503
    assert body["failing"] == ["redis", "worker", "beat"]
    assert body["checks"]["worker"]["detail"].startswith("unknown")
    assert time.monotonic() - started < 5


def test_preflight_names_the_missing_service_and_docker_alternative() -> None:
    env = dict(
        os.environ,
        DATABASE_URL="postgres://postgres@127.0.0.1:1/oncepay",
        REDIS_URL="redis://127.0.0.1:1/0",
    )
    result = subprocess.run(
        [sys.executable, "scripts/preflight.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "PostgreSQL is not reachable" in result.stderr
    assert "Redis is not reachable" in result.stderr
    assert "docker compose up" in result.stderr


def test_no_private_key_is_tracked_by_git() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    for name in tracked:
        path = ROOT / name
        if path.is_file() and path.suffix in {
            ".py",
            ".json",
            ".pem",
            ".txt",
            ".md",
            ".yml",
            ".toml",
            "",
        }:
            assert "PRIVATE KEY-----\n" not in path.read_text(errors="ignore") or "test" in name, (
                name
            )
