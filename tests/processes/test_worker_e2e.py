"""End to end: a real ``celery -A routerhub worker`` on a real Redis, the fake OpenAI-compatible server.

Register a new LLM in the admin → its profiling is queued after the save commits → the worker asks
it the validation prompts, grades and stores them, computes Ψ on the active state → POST
/api/v1/route sends the LLM the prompts of the subject it is good at. No refit, no restart.
Then: retries on a failing provider, a worker killed mid-job, and a refit watched by a reader.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from registry.models import LLM, Outcome, Prompt
from registry.services import llm_register
from routing.models import Job, LLMProfile, RoutingState, StateCentroid, Tenant
from routing.selectors import routers
from routing.services import jobs, tenancy
from tests.fakes.fake_openai import FakeOpenAI
from tests.fixtures.subjects import GOOD_CATEGORY, VOCABULARY, load_routing_data

pytestmark = pytest.mark.slow
JOB_TIMEOUT_SECONDS = 60


def wait_for_job(job_id: int, worker, *, timeout: float = JOB_TIMEOUT_SECONDS) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.select_related("llm", "state").get(id=job_id)
        if job.status in (Job.Status.SUCCEEDED, Job.Status.FAILED):
            return job
        time.sleep(0.1)
    pytest.fail(f"job {job_id} still {job.status} after {timeout} s; worker log:\n{worker.log()[-4000:]}")


def wait_until(condition, *, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def data(worker, subjects_data):
    return load_routing_data(subjects_data)


@pytest.fixture
def api_key(data):
    return tenancy.api_key_create(tenant=Tenant.objects.create(name="acme", budget_usd=100), name="e2e").secret


def route(client, api_key, text):
    response = client.post(
        "/api/v1/route",
        {"prompt": text, "lambda": 1.0},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {api_key}",
    )
    assert response.status_code == 200, response.content[:2000]
    return response.json()["llm"]["name"]


def test_an_llm_added_in_the_admin_is_profiled_by_the_worker_and_routed_its_subject_without_a_refit(
    worker, data, api_key, admin_client, client
):
    test_prompts = {
        c: list(Prompt.objects.filter(prompt_set=data.prompt_set, split="test", category=c).order_by("id")[:15])
        for c in VOCABULARY
    }
    math_prompt = test_prompts[GOOD_CATEGORY][0].text
    assert route(client, api_key, math_prompt) != "fake-math"
    arrays_before = bytes(data.state.arrays)

    with FakeOpenAI(policy=data.expert_policy()) as server:
        started = time.monotonic()
        response = admin_client.post(
            "/admin/registry/llm/add/",
            {
                "name": "fake-math",
                "provider": "fake",
                "is_active": "on",
                "api_base": server.url,
                "api_model": "fake-1",
                "usd_per_mtok_in": "0.01",
                "usd_per_mtok_out": "0.02",
                "metadata": "{}",
            },
        )
        assert response.status_code == 302
        job = wait_for_job(Job.objects.get(llm__name="fake-math").id, worker)
        profiled_in = time.monotonic() - started

    assert job.status == Job.Status.SUCCEEDED, job.error
    n = len(data.state.validation_prompt_ids)
    assert (job.progress_done, job.progress_total, job.result["answered"]) == (n, n, n)
    assert Outcome.objects.filter(llm__name="fake-math", source=Outcome.Source.PROFILED).count() == n
    print(f"\nprofiled {n} validation prompts through a real worker in {profiled_in:.2f} s")

    # The web side (this process) picks the new profile up within a second, without a restart.
    wait_until(
        lambda: route(client, api_key, math_prompt) == "fake-math", timeout=5, what="the route API to use the new LLM"
    )
    for category, prompts in test_prompts.items():
        chosen = {route(client, api_key, p.text) for p in prompts}
        if category == GOOD_CATEGORY:
            assert chosen == {"fake-math"}
        else:
            assert "fake-math" not in chosen, category

    state = RoutingState.objects.get()
    assert state.version == 1 and bytes(state.arrays) == arrays_before  # no refit


def test_the_worker_retries_a_failing_provider_with_backoff_and_completes(worker, data):
    # One try per call: each injected 503 ends a task attempt, and Celery retries the task.
    with FakeOpenAI(policy=data.expert_policy(), fail_first=3, fail_status=503) as server:
        llm = llm_register(name="flaky", api_base=server.url, usd_per_query=0.0001)
        job, _ = jobs.llm_profile_enqueue(
            llm=llm, arguments={"max_attempts": 1, "concurrency": 1, "backoff_seconds": 0}
        )
        job = wait_for_job(job.id, worker)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 4 and [r["status"] for r in server.requests[:4]] == [503, 503, 503, 200]
    assert Outcome.objects.filter(llm=llm).count() == len(data.state.validation_prompt_ids)
    assert LLMProfile.objects.filter(llm=llm, state=data.state).exists()


def test_a_worker_killed_mid_job_resumes_on_redelivery_without_duplicate_or_lost_outcomes(worker, data):
    n = len(data.state.validation_prompt_ids)
    with FakeOpenAI(policy=data.expert_policy(), hold_after=10) as server:
        llm = llm_register(name="interrupted", api_base=server.url, usd_per_query=0.0001)
        job, _ = jobs.llm_profile_enqueue(llm=llm, arguments={"concurrency": 2})
        # Ten answers stored, two calls hanging: kill the pool process running the job.
        for _ in range(2):
            assert server.held.acquire(timeout=JOB_TIMEOUT_SECONDS)
        wait_until(lambda: Outcome.objects.filter(llm=llm).count() == 10, what="the first ten answers to be stored")
        stored_before_kill = set(Prompt.objects.filter(outcomes__llm=llm).values_list("text", flat=True))
        calls_before_kill = len(server.requests)
        worker.kill_pool_child()
        wait_until(lambda: len(worker.pool_children()) == 1, what="the worker to start a new pool process")
        server.release()
        job = wait_for_job(job.id, worker)

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 2  # the redelivered message ran the same job again
    prompt_ids = list(Outcome.objects.filter(llm=llm).values_list("prompt_id", flat=True))
    assert len(prompt_ids) == len(set(prompt_ids)) == n
    asked_after_kill = [r["text"] for r in server.requests[calls_before_kill:]]
    assert not stored_before_kill & set(asked_after_kill)  # stored answers were not bought twice
    assert len(asked_after_kill) == n - 10  # the two calls lost with the process, and the rest


def test_a_refit_by_the_worker_switches_readers_atomically(worker, data):
    expected_profiles = LLMProfile.objects.filter(state=data.state).count()
    observations, errors, stop = [], [], threading.Event()

    def read_like_a_web_process():
        try:
            while not stop.is_set():
                router = routers.active_router(max_age_seconds=0)
                centroids = StateCentroid.objects.filter(state_id=router.state_id).count()
                observations.append((router.version, len(router.llms), centroids))
        except Exception as exc:  # recorded: a missing state, a state without profiles, …
            errors.append(exc)
        finally:
            connection.close()

    reader = threading.Thread(target=read_like_a_web_process)
    reader.start()
    try:
        wait_until(lambda: len(observations) > 5, what="the reader to start")
        job, _ = jobs.routing_state_refit_enqueue(
            strategy="uniroute_kmeans", params={"n_clusters": 4, "prior_strength": 1.0}
        )
        job = wait_for_job(job.id, worker)
        wait_until(lambda: observations and observations[-1][0] == 2, timeout=5, what="the reader to see v2")
    finally:
        stop.set()
        reader.join(timeout=10)

    assert job.status == Job.Status.SUCCEEDED, job.error
    assert errors == []
    versions = [v for v, _, _ in observations]
    assert versions.count(1) > 5 and versions.count(2) > 0
    assert versions[0] == 1 and versions[-1] == 2 and versions == sorted(versions)  # switched once, never back
    for version, n_llms, centroids in observations:
        assert n_llms == expected_profiles and centroids == (3 if version == 1 else 4), (version, n_llms, centroids)
    assert RoutingState.objects.get(is_active=True).version == 2 and LLM.objects.count() == expected_profiles
