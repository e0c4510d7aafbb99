"""A job whose task could not reach the broker stays pending (it is not failed), and the periodic
sweep sends it — and queued jobs whose message was lost — again."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from registry.services import llm_register
from routerhub.celery import app
from routing import tasks
from routing.models import Job
from routing.services import jobs
from tests.processes.workers import free_port, point_producer_at, restore_producer

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_down():
    """Tasks go to a port where nothing listens: sending fails as with a broker that is down."""
    previous = point_producer_at(app, broker_url=f"redis://127.0.0.1:{free_port()}/0", queue="nowhere")
    yield
    restore_producer(app, previous)


@pytest.fixture
def sent(monkeypatch):
    calls = []
    for task in tasks.TASK_OF_KIND.values():
        monkeypatch.setattr(task, "apply_async", lambda *a, _task=task, **kw: calls.append(kw["kwargs"]["job_id"]))
    return calls


def test_a_job_created_while_the_broker_is_down_stays_pending_with_the_reason(
    broker_down, django_capture_on_commit_callbacks
):
    llm = llm_register(name="org/model@host:tag")
    with django_capture_on_commit_callbacks(execute=True):
        job, created = jobs.job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm)
    job.refresh_from_db()
    assert created and job.status == Job.Status.PENDING and job.finished_at is None
    assert "not sent yet, the broker is unreachable" in job.error


def test_the_sweep_sends_jobs_pending_long_enough_and_lost_queued_ones(sent, settings):
    settings.ROUTERHUB_JOB_RESEND_AFTER_SECONDS = 120
    now = timezone.now()
    llms = [llm_register(name=f"m{i}") for i in range(4)]

    def job(llm, status, age):
        made = Job.objects.create(kind=Job.Kind.PROFILE_LLM, llm=llm, status=status)
        Job.objects.filter(id=made.id).update(updated_at=now - age)
        return made.id

    old_pending = job(llms[0], Job.Status.PENDING, timedelta(minutes=3))
    fresh_pending = job(llms[1], Job.Status.PENDING, timedelta(seconds=10))
    lost_queued = job(llms[2], Job.Status.QUEUED, jobs.STALE_AFTER + timedelta(minutes=1))
    job(llms[3], Job.Status.QUEUED, timedelta(minutes=3))  # queued recently: still with the broker

    result = tasks.resend_pending_jobs.apply().get()
    assert result == {"sent": [old_pending, lost_queued], "not_sent": []}
    assert sent == [old_pending, lost_queued]
    assert Job.objects.get(id=old_pending).status == Job.Status.QUEUED
    assert Job.objects.get(id=fresh_pending).status == Job.Status.PENDING
    assert tasks.resend_pending_jobs.apply().get() == {"sent": [], "not_sent": []}  # nothing twice


def test_the_sweep_leaves_jobs_pending_while_the_broker_is_still_down(broker_down):
    llm = llm_register(name="m")
    made = Job.objects.create(kind=Job.Kind.PROFILE_LLM, llm=llm, status=Job.Status.PENDING)
    Job.objects.filter(id=made.id).update(updated_at=timezone.now() - timedelta(hours=1))
    assert tasks.resend_pending_jobs.apply().get() == {"sent": [], "not_sent": [made.id]}
    assert Job.objects.get(id=made.id).status == Job.Status.PENDING


def test_the_sweep_is_a_default_beat_schedule():
    # What the data migration leaves (its rows are gone after any test that flushes the database, so the
    # migration's own RunPython code is run again here, on the current models).
    from django.apps import apps

    migration = importlib.import_module("routing.migrations.0008_resend_pending_jobs_schedule")
    PeriodicTask.objects.filter(task="routing.resend_pending_jobs").delete()
    (run_python,) = migration.Migration.operations
    run_python.code(apps, None)
    task = PeriodicTask.objects.get(task="routing.resend_pending_jobs")
    assert task.enabled and task.crontab.minute == "*/5"
