"""The short chaos run: ``manage.py chaos`` in a subprocess with every sandbox fault on, the
Celery worker SIGKILLed and restarted, Redis state lost, a web worker killed and a phase with
the order lock disabled. It must end with ``violations: 0``.

Violations with the signature of the product bugs pinned in ``test_regressions.py`` turn the
result into an expected failure (with the run's report in the reason) until they are fixed;
any other violation fails the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED = 20261122

pytestmark = pytest.mark.chaos


def _known_product_bug(violations: list[dict[str, Any]]) -> bool:
    """True if every violation is one the regression tests already pin down (xfail)."""
    closed_but_captured = {
        v["order_id"]
        for v in violations
        if v["invariant"] == "2 nothing lost" and "attempt is 'closed'" in v["detail"]
    }

    def known(v: dict[str, Any]) -> bool:
        if v["invariant"] in ("1 charged once", "2 nothing lost"):
            return v["order_id"] in closed_but_captured
        # A paid order left with another attempt open, polled forever.
        return v["invariant"] == "3 bounded healing" and bool(
            re.search(r"order paid; .*=(created|paying|needs_attention)", v["detail"])
        )

    return bool(violations) and all(known(v) for v in violations)


@pytest.mark.timeout(420)
def test_short_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    report_path = tmp_path / "chaos.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}
    command = [
        sys.executable, "manage.py", "chaos",
        "--shoppers", "8", "--duration", "50", "--seed", str(SEED),
        "--faults", "all",
        "--process-faults", "kill_worker,restart_redis,kill_web,lock_off",
        "--order-ttl", "20", "--quiesce-timeout", "35",
        "--report-json", str(report_path),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=400
    )
    output = done.stdout + done.stderr
    assert report_path.exists(), output[-5000:]
    report = json.loads(report_path.read_text())
    kinds = {r["kind"] for r in report["process_faults"]}
    assert {"kill_worker", "restart_redis", "kill_web", "phase:lock_off"} <= kinds, output[-3000:]
    assert report["figures"]["captures"] > 0, output[-3000:]
    if _known_product_bug(report["violations"]):
        pytest.xfail("known product bugs (see test_regressions.py):\n" + output[-4000:])
    assert done.returncode == 0, output[-6000:]
    assert "violations: 0" in done.stdout, output[-6000:]
