"""Registering an LLM while the broker is down: 202 with the job pending; once the broker is back,
the periodic sweep sends the job and a real worker profiles the LLM."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from routerhub.celery import app
from routing import tasks
from routing.models import Job
from tests.fakes.fake_openai import FakeOpenAI
from tests.fixtures.subjects import load_routing_data
from tests.processes.workers import free_port, point_producer_at, restore_producer

pytestmark = pytest.mark.slow


def wait_for_job(job_id: int, worker, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(id=job_id)
        if job.status in (Job.Status.SUCCEEDED, Job.Status.FAILED):
            return job
        time.sleep(0.1)
    pytest.fail(f"job {job_id} is still {job.status}; worker log:\n{worker.log()[-4000:]}")


def register(admin_client, name: str, api_base: str):
    return admin_client.post(
        "/api/v1/llms",
        {"name": name, "api_base": api_base, "api_model": "fake-1", "usd_per_mtok_in": 0.01, "usd_per_mtok_out": 0.02},
        content_type="application/json",
    )


def test_an_llm_registered_with_the_broker_up_is_201_and_queued(worker, subjects_data, admin_client, broker_url):
    data = load_routing_data(subjects_data)
    with FakeOpenAI(policy=data.expert_policy()) as server:
        response = register(admin_client, "acme/fast-math@fake:1", server.url)
        assert response.status_code == 201, response.content
        assert response.json()["profiling_job_status"] == "queued"
        job = wait_for_job(response.json()["profiling_job"], worker)
    assert job.status == Job.Status.SUCCEEDED, job.error


def test_an_llm_registered_with_the_broker_down_is_202_pending_until_the_sweep_sends_it(
    worker, subjects_data, admin_client, broker_url
):
    data = load_routing_data(subjects_data)
    live = point_producer_at(app, broker_url=f"redis://127.0.0.1:{free_port()}/0", queue=worker.queue)
    try:
        with FakeOpenAI(policy=data.expert_policy()) as server:
            response = register(admin_client, "acme/late-math@fake:1", server.url)
            assert response.status_code == 202, response.content
            body = response.json()
            assert body["name"] == "acme/late-math@fake:1" and body["profiling_job_status"] == "pending"
            job = Job.objects.get(id=body["profiling_job"])
            assert job.status == Job.Status.PENDING and "broker is unreachable" in job.error

            point_producer_at(app, broker_url=live["broker_url"], queue=worker.queue)  # the broker is back
            assert tasks.resend_pending_jobs.apply().get() == {"sent": [], "not_sent": []}  # too recent yet
            Job.objects.filter(id=job.id).update(updated_at=timezone.now() - timedelta(minutes=3))
            assert tasks.resend_pending_jobs.apply().get() == {"sent": [job.id], "not_sent": []}
            job = wait_for_job(job.id, worker)
    finally:
        restore_producer(app, live)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["answered"] == len(data.state.validation_prompt_ids)
