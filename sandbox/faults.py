"""Fault injection: probabilities the test harness sets through ``/sandbox/faults``.

Every draw goes through one RNG behind a lock, so a run started with ``SANDBOX_SEED`` replays
the same sequence of faults for the same sequence of requests.
"""

from __future__ import annotations

import random
import threading
from typing import Any

PROBABILITIES: tuple[str, ...] = (
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
    "refund_reject",
    "bill_not_ready",
    "bill_omit",
    "bill_amount_mismatch",
)
# Plain numbers (seconds), not probabilities.
NUMBERS: dict[str, float] = {"notify_delay_seconds": 0.0, "hang_seconds": 15.0}


class FaultSettingError(ValueError):
    pass


def _defaults() -> dict[str, float]:
    values = dict.fromkeys(PROBABILITIES, 0.0)
    values.update(NUMBERS)
    return values


class Faults:
    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._rng = random.Random(seed)  # simulation, not security
        self._values = _defaults()

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)

    def update(self, changes: Any) -> dict[str, float]:
        """Merge ``changes`` into the settings; all-or-nothing, so a bad key changes nothing."""
        if not isinstance(changes, dict):
            raise FaultSettingError("expected a JSON object")
        validated: dict[str, float] = {}
        for name, value in changes.items():
            if name not in self._values:
                raise FaultSettingError(f"unknown fault: {name}")
            # bool is an int in Python; "true" is not a probability.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FaultSettingError(f"{name} must be a number")
            number = float(value)
            if name in NUMBERS:
                if not 0 <= number <= 3600:
                    raise FaultSettingError(f"{name} must be between 0 and 3600 seconds")
            elif not 0 <= number <= 1:
                raise FaultSettingError(f"{name} must be a probability between 0 and 1")
            validated[name] = number
        with self._lock:
            self._values.update(validated)
            return dict(self._values)

    def reset(self) -> None:
        with self._lock:
            self._values = _defaults()
            self._rng = random.Random(self._seed)

    def draw(self, name: str) -> bool:
        """True with the configured probability of fault ``name``."""
        with self._lock:
            probability = self._values[name]
            if probability <= 0:
                return False
            return self._rng.random() < probability

    def number(self, name: str) -> float:
        with self._lock:
            return self._values[name]

    def uniform(self, high: float) -> float:
        with self._lock:
            return self._rng.uniform(0, high) if high > 0 else 0.0
