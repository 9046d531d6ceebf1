"""The reconciliation benchmark keeps working at a tiny size: it prints its table (speed is
measured, never asserted), finds exactly the disagreements it planted, and drops its database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]


def test_reconcile_bench_prints_its_table_and_drops_its_database() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    env["REDIS_URL"] = "redis://127.0.0.1:6379/15"
    env["REDIS_KEY_PREFIX"] = f"oncepay-rbench-test-{os.getpid()}"
    done = subprocess.run(
        [sys.executable, "manage.py", "reconcile_bench", "--lines", "300"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"channel\s+lines\s+ours s\s+lines/s\s+peak RSS\s+floor s", out), out
    rows = [line for line in out.splitlines() if re.match(r"(alipay|wechat)\s+300\s", line)]
    assert len(rows) == 2, out
    for row in rows:
        assert "30 (expected 30), status done" in row and " MB " in row
    assert "alipay floor: COPY" in out and "wechat time in reconcile" in out
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres") as conn:
        leftovers = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'oncepay_rbench_%'"
        ).fetchone()
    assert leftovers == (0,)
