"""Sending recorded refunds to the worker, once the transaction that recorded them commits.

By task name, so that the decision service (which records automatic refunds) and the refund
services share it without importing the tasks module; the refund sweep is the backstop when
the broker is down.
"""

from __future__ import annotations

import logging

from celery import current_app
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

EXECUTE_REFUND_TASK = "refunds.tasks.execute_refund"


def refund_dispatch(refund_id: int) -> None:
    if not settings.TASK_FOLLOW_UPS_ENABLED:
        return

    def send() -> None:
        try:
            current_app.send_task(EXECUTE_REFUND_TASK, args=(refund_id,))
        except Exception:  # broker down: the refund sweep picks it up
            logger.warning("refund %s dispatch deferred", refund_id, exc_info=True)

    transaction.on_commit(send)
