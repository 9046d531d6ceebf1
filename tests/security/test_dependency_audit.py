"""The dependency audit never reports a pass it did not earn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools.audit_deps import SKIPPED, pinned_requirements, summarise

ROOT = Path(__file__).resolve().parents[2]


def test_no_reachable_vulnerability_data_is_a_skip_not_a_pass(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["requests==2.34.2"]\n')
    env = {
        **os.environ,
        # Nothing answers here: as on a machine with no route to the vulnerability service.
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
    }
    result = subprocess.run(
        [sys.executable, "tools/audit_deps.py", "--pyproject", str(pyproject)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert SKIPPED in result.stdout
    assert "passed" not in result.stdout and "No known vulnerabilities" not in result.stdout


def test_what_pip_audit_says_is_read_strictly() -> None:
    skipped = {"name": "requests", "skip_reason": "Dependency not found on PyPI"}
    clean = {"name": "django", "version": "5.2.19", "vulns": []}
    bad = {"name": "django", "version": "1.0", "vulns": [{"id": "PYSEC-1", "fix_versions": ["2"]}]}
    # pip-audit exits 0 with "No known vulnerabilities found" when it skipped everything.
    assert summarise({"dependencies": [skipped]}, 0, "No known vulnerabilities", 1)[0] == 3
    assert summarise({}, 1, "ConnectionError: Max retries exceeded", 2) == (3, SKIPPED)
    assert summarise({"dependencies": [clean, skipped]}, 0, "", 2)[0] == 3
    assert summarise({"dependencies": [clean]}, 0, "", 1)[0] == 0
    code, message = summarise({"dependencies": [bad]}, 1, "", 1)
    assert code == 1 and "PYSEC-1" in message


def test_every_pinned_dependency_is_audited() -> None:
    pins = pinned_requirements(ROOT / "pyproject.toml")
    assert any(p.startswith("Django==") for p in pins)
    assert any(p.startswith("pip-audit==") for p in pins)
