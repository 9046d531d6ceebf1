"""The short chaos run: ``manage.py chaos`` in a subprocess with every sandbox fault on, the
Celery worker SIGKILLed and restarted, Redis state lost, a web worker killed and a phase with
the order lock disabled. It must end with ``violations: 0``; on failure the assertion message
carries the report, whose seed replays the run's choices (``manage.py chaos --seed ...``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED = 20261122

pytestmark = pytest.mark.chaos


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
    # The shop's own figures, read from its /metrics at the end of the run.
    assert set(report["shop_figures"]) == {"callbacks", "known", "healed"}, output[-3000:]
    assert done.returncode == 0, output[-6000:]
    assert "violations: 0" in done.stdout, output[-6000:]
