"""The shipped alert rules load: with promtool when it is installed (Debian's ``prometheus``
package), and always by their structure, so CI without promtool still checks them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
METRICS = ROOT / "shop" / "metrics.py"
VIEW = ROOT / "shop" / "metrics_view.py"

EXPECTED = {
    "OncepayCallbacksSilent",
    "OncepayGatewayErrors",
    "OncepayAttemptsNeedAttention",
    "OncepayRefundsFailing",
    "OncepayOutboxBacklog",
    "OncepayBeatNotTicking",
}


def _rules() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    rules: list[dict[str, object]] = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"]
        rules.extend(group["rules"])
    return rules


def test_promtool_accepts_the_rules_when_installed() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        # Not installed here: the structural test below is the check that always runs.
        return
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in result.stdout


def test_every_alert_is_well_formed_and_uses_only_metrics_we_export() -> None:
    rules = _rules()
    assert {rule["alert"] for rule in rules} == EXPECTED
    exported = set(re.findall(r'"(oncepay_[a-z_]+)"', METRICS.read_text() + VIEW.read_text()))
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        expr = str(rule["expr"])
        assert expr.count("(") == expr.count(")"), rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", str(rule["for"])), rule["alert"]
        assert isinstance(rule["labels"], dict) and rule["labels"]["severity"] in {"page", "ticket"}
        annotations = rule["annotations"]
        assert isinstance(annotations, dict) and annotations["summary"] and annotations["runbook"]
        used = set(re.findall(r"\b(oncepay_[a-z_]+)", expr))
        assert used, rule["alert"]
        # A histogram's series carry _bucket/_count/_sum; a counter's carry _total.
        unknown = {
            name
            for name in used
            if name not in exported and re.sub(r"_(bucket|count|sum)$", "", name) not in exported
        }
        assert unknown == set(), (rule["alert"], unknown)


def test_every_alert_has_a_one_line_runbook_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in EXPECTED:
        assert re.search(rf"^- \*\*{name}\*\* — \S", readme, re.MULTILINE), name
