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
    lines = out.splitlines()
    assert any(line.startswith("== reconciliation") for line in lines), out
    assert any(re.match(r"scenario\s+n\s+ours/s\s+p50 ms\s+p99 ms\s+RSS\s+floor/s", line)
               for line in lines), out  # fmt: skip
    rows = [line for line in lines if re.match(r"(alipay|wechat), 300 lines\s+300\s", line)]
    assert len(rows) == 2, out
    for row in rows:
        assert " MB " in row and row.split()[-1] == "0", row  # no error: the findings planted
    assert out.count("30 findings (expected 30), status done") == 2, out
    assert "floor: COPY" in out and "time in reconcile" in out
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres") as conn:
        leftovers = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'oncepay_rbench_%'"
        ).fetchone()
    assert leftovers == (0,)
