"""What goes wrong during a run: sandbox fault rates and a seeded timeline of process faults.

Sandbox faults are probabilities the sandbox draws per request (``POST /sandbox/faults``).
Process faults are events at seeded moments of the load phase, executed one at a time by the
``Conductor`` thread, so two of them never tear at the stack at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaos.stack import ChaosStack

logger = logging.getLogger(__name__)

PROBABILITY_FAULTS: tuple[str, ...] = (
    "notify_drop",
    "notify_duplicate",
    "notify_reorder",
    "query_error",
    "query_timeout",
    "prepay_timeout",
    "close_error",
    "refund_error",
    "ignore_close",
    "ignore_time_expire",
)
SECONDS_FAULTS: tuple[str, ...] = ("notify_delay_seconds",)
SANDBOX_FAULTS = PROBABILITY_FAULTS + SECONDS_FAULTS

# "all": every fault at once, at rates where most trades still go through and every fault is
# still hit many times in a two-minute run.
MODERATE: dict[str, float] = {
    "notify_drop": 0.25,
    "notify_duplicate": 0.2,
    "notify_reorder": 0.2,
    "notify_delay_seconds": 2.0,
    "query_error": 0.15,
    "query_timeout": 0.1,
    "prepay_timeout": 0.1,
    "close_error": 0.15,
    "refund_error": 0.2,
    "ignore_close": 0.15,
    "ignore_time_expire": 0.3,
}
# How long a hung gateway answer hangs: past GATEWAY_READ_TIMEOUT, and past a short lock TTL.
HANG_SECONDS = 3.0

PROCESS_FAULTS: tuple[str, ...] = (
    "kill_worker",  # SIGKILL the Celery worker's process group, restart it a moment later
    "restart_redis",  # lose all of the run's Redis state (locks, dedupe, paid cache, queue)
    "kill_web",  # SIGKILL one gunicorn worker mid-request
    "lock_off",  # a phase with PAYMENT_LOCK_ENABLED=0 (web and worker restarted)
    "short_lock",  # a phase with a lock TTL shorter than a gateway call
    "double_beat",  # a window with two beat schedulers
)
ALIASES = {"redis_lost": "restart_redis", "lock_disabled": "lock_off"}
PHASES: dict[str, dict[str, str]] = {
    "normal": {},
    "lock_off": {"PAYMENT_LOCK_ENABLED": "0"},
    "short_lock": {"PAYMENT_LOCK_ENABLED": "1", "PAYMENT_LOCK_TTL_SECONDS": "0.5"},
}
POINT_FAULTS = ("kill_worker", "restart_redis", "kill_web")
# One point fault of each kind per this many seconds of load (at least one).
POINT_FAULT_PERIOD_SECONDS = 45.0


class FaultSpecError(ValueError):
    pass


def parse_sandbox_faults(text: str) -> dict[str, float]:
    """``"all"``, ``"none"``, ``"notify_drop=0.3,query_error=0.2"`` or ``"all,notify_drop=0.5"``."""
    rates: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part or part == "none":
            continue
        if part == "all":
            rates.update(MODERATE)
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if name not in SANDBOX_FAULTS:
            raise FaultSpecError(
                f"unknown sandbox fault {name!r}; known: {', '.join(SANDBOX_FAULTS)}"
            )
        try:
            number = float(value) if sep else MODERATE[name]
        except ValueError:
            raise FaultSpecError(f"{name}: {value!r} is not a number") from None
        limit = 60.0 if name in SECONDS_FAULTS else 1.0
        if not 0 <= number <= limit:
            raise FaultSpecError(f"{name} must be between 0 and {limit:g}")
        rates[name] = number
    return rates


def sandbox_settings(rates: dict[str, float]) -> dict[str, float]:
    """The full body for ``POST /sandbox/faults``: unnamed faults off, a short hang."""
    body = dict.fromkeys(SANDBOX_FAULTS, 0.0)
    body.update(rates)
    body["hang_seconds"] = HANG_SECONDS
    return body


def faults_off() -> dict[str, float]:
    return dict.fromkeys(SANDBOX_FAULTS, 0.0)


def parse_process_faults(text: str) -> tuple[str, ...]:
    kinds: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part or part == "none":
            continue
        if part == "all":
            kinds.extend(k for k in PROCESS_FAULTS if k not in kinds)
            continue
        kind = ALIASES.get(part, part)
        if kind not in PROCESS_FAULTS:
            raise FaultSpecError(
                f"unknown process fault {part!r}; known: {', '.join(PROCESS_FAULTS)}"
            )
        if kind not in kinds:
            kinds.append(kind)
    return tuple(kinds)


@dataclass(frozen=True)
class Event:
    at: float  # seconds after the load starts
    kind: str  # a point fault, "phase", "double_beat_on" or "double_beat_off"
    arg: str = ""  # the phase name
    pick: int = 0  # a seeded number for choices inside the event


def plan_process_faults(kinds: tuple[str, ...], duration: float, rng: random.Random) -> list[Event]:
    """A seeded timeline: lock phases split the load evenly, point faults fall in between."""
    events: list[Event] = []
    phases = [k for k in ("lock_off", "short_lock") if k in kinds]
    boundaries = [duration * i / (len(phases) + 1) for i in range(1, len(phases) + 1)]
    events += [Event(at, "phase", name) for at, name in zip(boundaries, phases, strict=True)]
    if "double_beat" in kinds:
        on = duration * rng.uniform(0.2, 0.4)
        events += [
            Event(on, "double_beat_on"),
            Event(on + duration * rng.uniform(0.2, 0.3), "double_beat_off"),
        ]
    count = max(1, round(duration / POINT_FAULT_PERIOD_SECONDS))
    for kind in (k for k in POINT_FAULTS if k in kinds):
        for _ in range(count):
            at = duration * rng.uniform(0.1, 0.9)
            # Not during a phase switch: the restart would swallow the fault.
            if any(abs(at - b) < 4 for b in boundaries):
                at += 8
            events.append(Event(min(at, duration - 1), kind, pick=rng.randrange(1 << 30)))
    return sorted(events, key=lambda e: e.at)


@dataclass
class FaultRecord:
    at: float  # seconds after the load started
    kind: str
    detail: str


@dataclass
class Conductor:
    """Executes the timeline against the stack, one event at a time, and records each one."""

    plan: list[Event]
    stack: ChaosStack
    started: float  # time.monotonic() when the load started
    stop: threading.Event
    records: list[FaultRecord] = field(default_factory=list)
    phase: str = "normal"
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chaos-conductor", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        for event in self.plan:
            if self.stop.wait(max(0.0, self.started + event.at - time.monotonic())):
                break
            try:
                detail = self._execute(event)
            except Exception as exc:  # a fault that could not be injected is reported, not fatal
                logger.exception("process fault %s failed", event.kind)
                detail = f"FAILED: {type(exc).__name__}: {exc}"
            name = f"phase:{event.arg}" if event.kind == "phase" else event.kind
            self.records.append(
                FaultRecord(round(time.monotonic() - self.started, 1), name, detail)
            )

    def _execute(self, event: Event) -> str:
        stack = self.stack
        actions: dict[str, Callable[[], str]] = {
            "kill_worker": lambda: self._kill_worker(event),
            "restart_redis": lambda: f"redis state lost: {stack.redis.forget()} keys deleted",
            "kill_web": lambda: f"web worker pid {stack.kill_web_worker(event.pick)} killed",
            "phase": lambda: self._phase(event.arg),
            "double_beat_on": lambda: _call(stack.start_extra_beat, "second beat started"),
            "double_beat_off": lambda: _call(stack.stop_extra_beat, "second beat stopped"),
        }
        return actions[event.kind]()

    def _kill_worker(self, event: Event) -> str:
        self.stack.kill_worker()
        down = 1.0 + (event.pick % 30) / 10  # 1.0-3.9 s without a worker
        self.stop.wait(down)
        self.stack.restart_worker()
        return f"worker SIGKILLed, restarted after {down:.1f}s"

    def _phase(self, name: str) -> str:
        self.stack.restart_app(PHASES[name])
        self.phase = name
        return f"web and worker restarted with {PHASES[name] or 'default lock settings'}"

    def finish(self) -> None:
        """Leave a working stack behind: a worker running, one beat."""
        if self.stack.worker is None or not self.stack.worker.alive:
            self.stack.restart_worker()
        self.stack.stop_extra_beat()


def _call(action: Callable[[], None], detail: str) -> str:
    action()
    return detail


def notification_fault_counts(notifications: list[dict[str, Any]]) -> dict[str, int]:
    """What the sandbox's notification log shows of the notify faults it drew."""
    counts = {
        "notifications": len(notifications),
        "notify_dropped": 0,
        "notify_duplicated": 0,
        "notify_reordered": 0,
        "notify_delayed": 0,
        "notify_retries": 0,
        "notify_gave_up": 0,
    }
    for item in notifications:
        counts["notify_dropped"] += bool(item.get("dropped"))
        counts["notify_reordered"] += bool(item.get("reordered"))
        counts["notify_delayed"] += float(item.get("delay") or 0) > 0
        counts["notify_gave_up"] += bool(item.get("gave_up"))
        for attempt in item.get("attempts", []):
            counts["notify_duplicated"] += bool(attempt.get("duplicate"))
            counts["notify_retries"] += int(attempt.get("number", 1)) > 1 and not attempt.get(
                "duplicate"
            )
    return counts
