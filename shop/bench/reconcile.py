"""``reconciliation``: a generated day of statement lines per channel, in each gateway's real
format, reconciled by ``manage.py reconcile`` in its own process (download from a sandbox over
HTTP, digest, parse, stage, match), next to a floor that only decompresses the file, ``COPY``s
its raw lines and joins them once against the attempts (``reconciliation.bench``).

One row per channel: lines per second and peak RSS of each process. ``manage.py
reconcile_bench`` prints the same table.
"""

from __future__ import annotations

from reconciliation.bench import (
    CHANNELS,
    ChannelResult,
    Measured,
    bare_process_rss_mb,
    reconcile_bench,
)
from shop.bench.core import Measure, Row, Write, table


def run(*, tiny: bool, write: Write) -> None:
    lines = 2_000 if tiny else 1_000_000
    report(reconcile_bench(lines=lines, channels=CHANNELS, write=write), write)


def _measure(lines: int, measured: Measured, *, errors: int = 0) -> Measure:
    # One run per side: its wall time stands in both latency columns.
    return Measure(lines, measured.seconds, [measured.seconds], measured.peak_rss_mb, errors)


def report(results: list[ChannelResult], write: Write) -> None:
    rows = []
    for result in results:
        phases = ", ".join(
            f"{phase} {result.timings[phase]:.1f} s"
            for phase in ("download", "stage", "match", "total")
            if phase in result.timings
        )
        rows.append(
            Row(
                f"{result.channel}, {result.lines:,} lines",
                _measure(result.lines, result.ours, errors=int(not result.as_expected)),
                _measure(result.lines, result.floor),
                f"{result.findings} findings (expected {result.expected_findings}),"
                f" status {result.status}; time in reconcile (start-up aside): {phases};"
                f" floor: {result.floor.output.strip()}; p50 = p99 = the process's wall time",
            )
        )
    table("reconciliation: statement lines per second, reconcile vs COPY + one join", rows, write)
    write(f"-- peak RSS of a bare `manage.py check` process: {bare_process_rss_mb():.0f} MB")
