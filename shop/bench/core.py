"""What every benchmark scenario shares: measurements, load loops, the table, peak RSS."""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

Write = Callable[[str], None]


@dataclass
class Measure:
    """One measured run of one side (ours or the floor)."""

    count: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    peak_rss_mb: float | None = None
    errors: int = 0
    cpu_ms_per_item: float | None = None  # server CPU (user + system) per item, where measured

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000


@dataclass
class Row:
    """One line of a scenario's table: ours next to its floor."""

    name: str
    ours: Measure
    floor: Measure | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or not self.floor.per_second:
            return None
        return self.ours.per_second / self.floor.per_second


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MB"


def table(title: str, rows: Iterable[Row], write: Write) -> None:
    """Print a scenario's rows; ratio = ours / floor throughput (1.00 = as fast as the floor)."""
    header = (
        f"{'scenario':<44} {'n':>7} {'ours/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'RSS':>7}"
        f" {'floor/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'RSS':>7} {'ratio':>6} {'err':>4}"
    )
    write(f"== {title}")
    write(header)
    for row in rows:
        ours, floor = row.ours, row.floor
        floor_cells = (
            f" {floor.per_second:>9.0f} {floor.percentile_ms(0.5):>8.2f}"
            f" {floor.percentile_ms(0.99):>8.2f} {_mb(floor.peak_rss_mb):>7}"
            if floor
            else f" {'-':>9} {'-':>8} {'-':>8} {'-':>7}"
        )
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        write(
            f"{row.name:<44} {ours.count:>7} {ours.per_second:>9.0f}"
            f" {ours.percentile_ms(0.5):>8.2f} {ours.percentile_ms(0.99):>8.2f}"
            f" {_mb(ours.peak_rss_mb):>7}{floor_cells} {ratio:>6}"
            f" {ours.errors + (floor.errors if floor else 0):>4}"
        )
        if row.note:
            write(f"    {row.note}")


def peak_rss_self_mb() -> float:
    """This process's peak resident set (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb(pids: Iterable[int]) -> float | None:
    """The largest peak resident set (VmHWM) among these processes, while they are alive."""
    peaks = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks) if peaks else None


def timed(items: Sequence[T], step: Callable[[T], object]) -> Measure:
    """One caller, one item after another."""
    latencies = []
    started = time.perf_counter()
    for item in items:
        t0 = time.perf_counter()
        step(item)
        latencies.append(time.perf_counter() - t0)
    return Measure(len(items), time.perf_counter() - started, latencies)


def closed_loop(
    items: Sequence[T],
    step: Callable[[T], bool],
    *,
    concurrency: int,
    setup: Callable[[], object] | None = None,
) -> Measure:
    """``concurrency`` callers, each sending its next item as soon as the last was answered.
    ``step`` returns False for an error answer (counted, and kept in the latencies)."""
    return _callers(items, step, concurrency=concurrency, setup=setup, rate=None)


def open_loop(
    items: Sequence[T],
    step: Callable[[T], bool],
    *,
    rate: float,
    concurrency: int,
    setup: Callable[[], object] | None = None,
) -> Measure:
    """Items arrive at a fixed ``rate`` per second whatever the answers do; each latency runs
    from the item's scheduled arrival, so a slow answer that delays the next send shows in the
    figures instead of hiding (no coordinated omission). ``concurrency`` callers send."""
    return _callers(items, step, concurrency=concurrency, setup=setup, rate=rate)


def _callers(
    items: Sequence[T],
    step: Callable[[T], bool],
    *,
    concurrency: int,
    setup: Callable[[], object] | None,
    rate: float | None,
) -> Measure:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    position = iter(range(len(items)))
    started = time.perf_counter()

    def caller() -> None:
        nonlocal errors
        if setup is not None:
            setup()
        mine: list[float] = []
        failed = 0
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                break
            if rate is None:
                due = time.perf_counter()
            else:
                due = started + index / rate
                if (wait := due - time.perf_counter()) > 0:
                    time.sleep(wait)
            ok = step(items[index])
            mine.append(time.perf_counter() - due)
            failed += not ok
        with lock:
            latencies.extend(mine)
            errors += failed

    threads = [threading.Thread(target=caller) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Measure(len(items), time.perf_counter() - started, latencies, errors=errors)
