"""The Celery app. Beat schedules live in one place: ``shop.schedules``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("oncepay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **kwargs: object) -> None:
    from shop.schedules import beat_schedule

    sender.conf.beat_schedule = beat_schedule()
