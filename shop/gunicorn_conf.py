"""gunicorn configuration hooks for Prometheus multiprocess mode (``-c shop/gunicorn_conf.py``).

The master empties the stack's metrics directory when it starts (a restart is a counter reset,
which Prometheus expects), and forgets the live gauges of each worker that exits.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any


def _metrics_dir() -> Path:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    from django.conf import settings

    return Path(settings.PROMETHEUS_MULTIPROC_DIR)


def on_starting(server: Any) -> None:
    directory = _metrics_dir()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
