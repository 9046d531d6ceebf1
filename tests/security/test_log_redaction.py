"""Logs redact signatures, keys, access tokens and full e-mail addresses — the access log
included. A whole payment runs through the README's gunicorn (access log on, as scripts/run
starts it) and the sandbox; then its log is searched for every secret the payment carried."""

from __future__ import annotations

import html
import re
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from shop.credentials import local_credentials
from shop.logredact import redact, redact_query
from tests.conftest import make_product

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "Sensitive.Shopper@example.com"

# Built, so the file holds no key-shaped block (the PEM below is a made-up marker).
PEM_LABEL = " ".join(["PRIVATE", "KEY"])


def test_the_logs_of_a_whole_payment_hold_no_secret(shop_server: Any, sandbox: Any) -> None:
    make_product("TEA-LOG", price=2599, stock=10)
    base = shop_server.url
    created = requests.post(
        f"{base}/api/v1/orders/",
        json={"items": [{"sku": "TEA-LOG", "quantity": 1}], "email": EMAIL},
        headers={"Idempotency-Key": "log-test-key"},
        timeout=30,
    ).json()
    order_id, token = created["id"], created["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    attempt = requests.post(
        f"{base}/api/v1/orders/{order_id}/pay",
        json={"channel": "alipay", "client": "wap"},
        headers=auth,
        timeout=30,
    ).json()
    browser = requests.Session()
    browser.trust_env = False
    browser.get(attempt["action"]["url"], timeout=10, allow_redirects=False).raise_for_status()
    assert sandbox.pay("alipay", attempt["out_trade_no"]).status_code == 200
    cashier = browser.get(
        f"{sandbox.base_url}/cashier/alipay/{attempt['out_trade_no']}", timeout=10
    )
    link = re.search(r'id="return-link" href="([^"]+)"', cashier.text)
    assert link
    params = dict(parse_qsl(urlsplit(html.unescape(link.group(1))).query))
    deadline = time.monotonic() + 30
    while (
        requests.get(f"{base}/api/v1/orders/{order_id}/", headers=auth, timeout=10).json()["status"]
        != "paid"
    ):
        assert time.monotonic() < deadline, "the notification never paid the order"
        time.sleep(0.3)
    # The shopper's browser comes back with the signed return, and the page polls its status.
    requests.get(f"{base}/payments/return/alipay/?{urlencode(params)}", timeout=30)
    requests.get(f"{base}/orders/{order_id}/status", headers=auth, timeout=30)
    time.sleep(0.5)  # let gunicorn flush the access log lines

    log = shop_server.log_text()
    assert "/payments/return/alipay/?" in log  # the access log is on and was written
    assert "sign=[redacted]" in log
    secrets = {
        "return signature": params["sign"],
        "access token": token,
        "full e-mail": EMAIL,
        "e-mail, lower case": EMAIL.lower(),
    }
    local = local_credentials()
    secrets["alipay private key"] = local["alipay"]["app_private_key_pem"].splitlines()[1]
    secrets["wechat apiv3 key"] = local["wechat"]["apiv3_key"]
    for name, value in secrets.items():
        assert value not in log, name
    assert f"BEGIN {PEM_LABEL}" not in log


def test_redaction_rules() -> None:
    assert redact("paid by alice.smith@example.com") == "paid by a***@example.com"
    assert redact("Authorization: Bearer abc.DEF-123") == "Authorization: Bearer [redacted]"
    assert "xyz" not in redact('{"sign": "xyz", "amount": 5}')
    assert "s3cr3t" not in redact("apiv3_key=s3cr3t")
    pem = f"-----BEGIN {PEM_LABEL}-----\nMIIabc\n-----END {PEM_LABEL}-----"  # not a key
    assert "MIIabc" not in redact(f"loaded {pem}")
    query = redact_query("out_trade_no=OP1&sign=AbC%2B%3D&shown=n0nce&total_amount=1.00")
    assert query == "out_trade_no=OP1&sign=[redacted]&shown=[redacted]&total_amount=1.00"
