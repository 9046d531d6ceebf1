#!/usr/bin/env python3
"""Audit the pinned dependencies (pyproject.toml: base and dev) with pip-audit.

Never reports a pass it did not earn: pip-audit says "No known vulnerabilities found" even when
it could not look a single package up (no route to its vulnerability service), so every package
it skipped is counted. Exit codes: 0 every pinned package audited, none vulnerable; 1 known
vulnerabilities; 3 "audit skipped: no vulnerability data reachable" (nothing, or not everything,
could be checked); 2 pip-audit itself failed otherwise.

    .venv/bin/python tools/audit_deps.py [--service pypi|osv]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED = "audit skipped: no vulnerability data reachable"
UNREACHABLE = re.compile(
    r"ConnectionError|NameResolution|Max retries|timed out|Timeout|ServiceError|"
    r"Temporary failure in name resolution|Connection refused|Network is unreachable",
    re.I,
)


def pinned_requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    pins = [*project["dependencies"], *project.get("optional-dependencies", {}).get("dev", [])]
    return [pin for pin in pins if "==" in pin]


def run_audit(requirements: list[str], service: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text("\n".join(requirements) + "\n")
        out = Path(tmp) / "audit.json"
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "pip_audit", "-r", str(req)),
                *("--no-deps", "--disable-pip", "--progress-spinner", "off"),
                *("--service", service, "--format", "json", "--output", str(out)),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        report = json.loads(out.read_text()) if out.exists() and out.read_text().strip() else {}
    return summarise(report, proc.returncode, proc.stdout + proc.stderr, len(requirements))


def summarise(report: dict, returncode: int, output: str, expected: int) -> tuple[int, str]:
    """The exit code and the message for one pip-audit run (see the module docstring)."""
    dependencies = report.get("dependencies", [])
    if not dependencies:
        if UNREACHABLE.search(output) or returncode == 0:
            return 3, SKIPPED
        return 2, f"pip-audit failed:\n{output.strip()}"
    skipped = [d for d in dependencies if d.get("skip_reason")]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    lines = [
        f"{d['name']} {d.get('version', '')}: "
        + ", ".join(
            v.get("id", "?")
            + (f" (fix: {', '.join(v['fix_versions'])})" if v.get("fix_versions") else "")
            for v in d["vulns"]
        )
        for d in vulnerable
    ]
    if vulnerable:
        note = f"\n({len(skipped)} packages could not be audited)" if skipped else ""
        return 1, "known vulnerabilities:\n" + "\n".join(lines) + note
    if len(skipped) == len(dependencies) or len(dependencies) < expected:
        return 3, SKIPPED
    if skipped:
        names = ", ".join(d["name"] for d in skipped)
        return 3, f"{SKIPPED} for {len(skipped)} of {len(dependencies)} packages: {names}"
    return 0, f"audit passed: {len(dependencies)} pinned packages, no known vulnerabilities"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", default="pypi", choices=["pypi", "osv"])
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    args = parser.parse_args()
    requirements = pinned_requirements(args.pyproject)
    code, message = run_audit(requirements, args.service)
    print(message)
    return code


if __name__ == "__main__":
    sys.exit(main())
