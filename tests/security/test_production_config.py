"""Production refuses to start half-configured, and never with the local sandbox merchant."""

from __future__ import annotations

import os
import subprocess
import sys

from shop.credentials import local_credentials
from tests.security.production_env import GATEWAY_VARIABLES, production_env
from tests.support.stack import ROOT


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Load the settings as every process does at start-up (manage.py check)."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTEST_VERSION" and k not in GATEWAY_VARIABLES and k != "SECRET_KEY"
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_complete_production_configuration_starts() -> None:
    result = _start(production_env())
    assert result.returncode == 0, result.stderr


def test_missing_secret_key_and_gateway_credentials_stop_start_up_naming_them() -> None:
    env = production_env()
    for name in ("SECRET_KEY", "ALIPAY_APP_PRIVATE_KEY", "WECHAT_APIV3_KEY", "WECHAT_MCHID"):
        env.pop(name)
    result = _start(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    for name in ("SECRET_KEY", "ALIPAY_APP_PRIVATE_KEY", "WECHAT_APIV3_KEY", "WECHAT_MCHID"):
        assert name in result.stderr, name
    assert "ALIPAY_APP_ID" not in result.stderr  # only what is missing is named


def test_require_secret_key_alone_also_means_production() -> None:
    env = production_env()
    env.pop("PRODUCTION")
    env["REQUIRE_SECRET_KEY"] = "1"
    env.pop("WECHAT_APPID")
    result = _start(env)
    assert result.returncode != 0 and "WECHAT_APPID" in result.stderr


def test_the_sandbox_merchants_keys_are_refused_in_production() -> None:
    local = local_credentials()
    env = production_env()
    env["ALIPAY_APP_PRIVATE_KEY"] = local["alipay"]["app_private_key_pem"]
    env["WECHAT_APIV3_KEY"] = local["wechat"]["apiv3_key"]
    result = _start(env)
    assert result.returncode != 0
    assert "sandbox credentials used for ALIPAY_APP_PRIVATE_KEY, WECHAT_APIV3_KEY" in result.stderr


def test_outside_production_the_sandbox_merchant_is_the_default() -> None:
    result = _start({"PRODUCTION": "0"})
    assert result.returncode == 0, result.stderr
