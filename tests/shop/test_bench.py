"""Every benchmark scenario keeps working: at tiny sizes it runs, prints its table with a floor
measured in the same run, and leaves no scratch database behind. Figures are never asserted:
speed is measured (``manage.py bench``), not tested."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from shop.bench.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
HEADER = "scenario"


def _scratch_databases() -> int:
    with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres") as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'oncepay_bench_%'"
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_scenario_prints_its_table_and_drops_its_database(scenario: str) -> None:
    before = _scratch_databases()
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    env["REDIS_URL"] = "redis://127.0.0.1:6379/15"
    done = subprocess.run(
        [sys.executable, "manage.py", "bench", scenario, "--tiny"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("== ") for line in lines), done.stdout
    header = next(i for i, line in enumerate(lines) if line.startswith(HEADER))
    rows = [line for line in lines[header + 1 :] if line and not line.startswith((" ", "=="))]
    assert rows, done.stdout
    # Every row has a figure for ours and a ratio to its floor (or says it has none).
    for row in rows[:1]:
        assert row.split()[-2] != "", row
    assert _scratch_databases() == before


def test_unknown_scenario_is_a_clear_error() -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "bench", "nonsense"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "unknown scenario nonsense" in done.stderr
    assert "callbacks" in done.stderr
