"""The Celery app, configured from Django settings (CELERY_* names)."""

import os

from celery import Celery
from celery.signals import task_postrun, worker_process_init

from routerhub import tracing
from routing import metrics

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "routerhub.settings")

app = Celery("routerhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_postrun.connect
def _count_job(sender=None, state=None, **_):
    """Every task run in the metrics (``routerhub_jobs_total``), by task and final state."""
    if sender is not None and state:
        metrics.observe_job(task_name=sender.name, state=state)


@worker_process_init.connect
def _trace(**_):
    """Each worker process exports its own spans (its exporter's thread does not survive the fork)."""
    tracing.configure()
