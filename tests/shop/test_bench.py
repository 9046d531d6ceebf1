"""The benchmark command keeps working: it prints its figures (never asserted: speed is measured,
not tested) and leaves no scratch database behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]


def test_bench_prints_every_scenario_and_drops_its_database() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    env["REDIS_URL"] = "redis://127.0.0.1:6379/15"
    env["REDIS_KEY_PREFIX"] = f"oncepay-bench-test-{os.getpid()}"
    done = subprocess.run(
        [sys.executable, "manage.py", "bench", "--count", "20"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if "/s" in line and "floor" in line]
    assert [line.split("  ")[0].strip() for line in lines] == [
        "capture callbacks, unique",
        "capture callbacks, 90% duplicates",
        "poll sweep claims (batches of 10)",
    ]
    # Callback outcomes come from the same counter /metrics exports: 20 + 2 new, 18 re-deliveries.
    assert "oncepay_callbacks_total: duplicate 18, verified 22" in done.stdout, done.stdout
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres") as conn:
        leftovers = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'oncepay_bench_%'"
        ).fetchone()
    assert leftovers == (0,)
