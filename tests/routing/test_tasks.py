"""Jobs and tasks in-process: enqueue after commit, run (``Task.apply``), retry, never twice, refit atomically.

The same tasks on a real broker and a real worker process are in ``tests/processes/test_worker_e2e.py``.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from registry.models import LLM, Outcome
from registry.services import llm_register
from routing import tasks
from routing.models import BudgetLease, BudgetPeriod, Job, LLMProfile, RoutingState, StateCentroid
from routing.services import jobs
from routing.services.budget_leases import LeaseBook
from routing.services.budgets import budget_status_current
from routing.services.schedules import DEFAULT_SCHEDULES, schedules_ensure
from routing.services.state import routing_state_profiles_reconcile
from routing.services.tenancy import tenant_create
from tests.fakes.fake_openai import FakeOpenAI

FAST = {"backoff_seconds": 0.0, "concurrency": 4}


@pytest.fixture
def sent(monkeypatch):
    """The tasks ``job_enqueue`` sends, recorded instead of published."""
    calls = []
    for task in tasks.TASK_OF_KIND.values():
        monkeypatch.setattr(task, "apply_async", lambda *args, _task=task, **kwargs: calls.append((_task.name, kwargs)))
    return calls


def register_fake(server, name="fake-math"):
    return llm_register(name=name, api_base=server.url, api_model="fake-1", usd_per_mtok_in=0.01, usd_per_mtok_out=0.02)


def run_profile_job(llm, **arguments):
    job, _ = jobs.job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm, arguments={**FAST, **arguments})
    tasks.profile_llm.apply(kwargs={"llm_id": llm.id, "job_id": job.id})
    job.refresh_from_db()
    return job


# -- enqueueing -------------------------------------------------------------------------------------
def test_enqueue_sends_the_task_only_after_commit_and_once_per_llm(db, sent, django_capture_on_commit_callbacks):
    llm = llm_register(name="newcomer")
    with django_capture_on_commit_callbacks(execute=True):
        job, created = jobs.job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm)
        again, created_again = jobs.job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm)
        assert sent == []  # not before the transaction commits
    assert (created, created_again, again) == (True, False, job)
    assert sent == [
        (
            "routing.profile_llm",
            {
                "kwargs": {"job_id": job.id, "llm_id": llm.id},
                "task_id": job.celery_task_id,
                "retry_policy": sent[0][1]["retry_policy"],
            },
        )
    ]
    job.refresh_from_db()
    assert Job.objects.count() == 1 and job.status == Job.Status.QUEUED  # pending until the broker took it


def test_a_lost_job_is_sent_again_when_asked_for_again(db, sent, django_capture_on_commit_callbacks):
    llm = llm_register(name="newcomer")
    with django_capture_on_commit_callbacks(execute=True):
        job, _ = jobs.job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm)
    Job.objects.filter(id=job.id).update(updated_at=timezone.now() - jobs.STALE_AFTER - timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        again, created = jobs.job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm)
    assert again == job and not created and len(sent) == 2


def test_an_unreachable_broker_leaves_the_job_pending_instead_of_failing_it_or_the_request(
    db, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    def unreachable(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(tasks.profile_llm, "apply_async", unreachable)
    with django_capture_on_commit_callbacks(execute=True):
        job, _ = jobs.job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm_register(name="newcomer"))
    job.refresh_from_db()
    assert job.status == Job.Status.PENDING and "broker is unreachable" in job.error and job.finished_at is None


# -- running ----------------------------------------------------------------------------------------
def test_profile_task_records_progress_result_and_the_state(routing_data, sent):
    with FakeOpenAI(policy=routing_data.expert_policy()) as server:
        job = run_profile_job(register_fake(server))
    n = len(routing_data.state.validation_prompt_ids)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert (job.progress_done, job.progress_total, job.attempts) == (n, n, 1)
    assert job.result["answered"] == n and job.result["state_version"] == 1 and job.state == routing_data.state
    assert job.started_at <= job.finished_at


def test_transient_failures_are_retried_by_the_task_with_backoff_until_it_succeeds(routing_data, sent):
    # One try per call, so each injected failure stops a task attempt and Celery retries it.
    with FakeOpenAI(policy=routing_data.expert_policy(), fail_first=2, fail_status=503) as server:
        job = run_profile_job(register_fake(server), max_attempts=1, concurrency=1)
    assert job.status == Job.Status.SUCCEEDED and job.attempts == 3
    assert Outcome.objects.filter(llm=job.llm).count() == len(routing_data.state.validation_prompt_ids)


def test_a_provider_that_never_recovers_fails_the_job_after_bounded_retries(routing_data, sent):
    with FakeOpenAI(policy=routing_data.expert_policy(), fail_first=10**6, fail_status=500) as server:
        job = run_profile_job(register_fake(server), max_attempts=1, concurrency=1)
        assert len(server.requests) == tasks.MAX_RETRIES + 1
    assert job.status == Job.Status.FAILED and "gave up" in job.error and job.attempts == tasks.MAX_RETRIES + 1


def test_a_job_delivered_again_after_it_finished_does_nothing(routing_data, sent):
    with FakeOpenAI(policy=routing_data.expert_policy()) as server:
        job = run_profile_job(register_fake(server))
        calls, finished_at = len(server.requests), job.finished_at
        tasks.profile_llm.apply(kwargs={"llm_id": job.llm_id, "job_id": job.id})
    job.refresh_from_db()
    assert len(server.requests) == calls and job.attempts == 1 and job.finished_at == finished_at


def test_a_job_another_worker_is_running_is_not_run_a_second_time(routing_data, sent):
    llm = llm_register(name="offline")
    job, _ = jobs.job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm)
    other_worker = connections.create_connection("default")
    try:
        with other_worker.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [jobs.ADVISORY_LOCK_NAMESPACE, job.id])
        tasks.profile_llm.apply(kwargs={"llm_id": llm.id, "job_id": job.id})
    finally:
        other_worker.close()
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.PENDING, 0)  # untouched (its send was not committed)


def test_a_job_delivered_too_many_times_is_failed_not_run(routing_data, sent):
    llm = llm_register(name="crashy")
    job, _ = jobs.job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm)
    Job.objects.filter(id=job.id).update(status=Job.Status.RUNNING, attempts=jobs.MAX_ATTEMPTS)
    tasks.profile_llm.apply(kwargs={"llm_id": llm.id, "job_id": job.id})
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "gave up after 8 attempts" in job.error


def test_an_llm_that_cannot_be_profiled_fails_its_job_with_the_reason(routing_data, sent):
    job = run_profile_job(llm_register(name="empty"))
    assert job.status == Job.Status.FAILED and "no outcome" in job.error and job.attempts == 1


def test_a_task_sent_without_a_job_gets_one_and_finds_it_again_when_redelivered(routing_data, sent):
    llm = LLM.objects.get(name="small")
    tasks.profile_llm.apply(kwargs={"llm_id": llm.id}, task_id="beat-1")
    tasks.profile_llm.apply(kwargs={"llm_id": llm.id}, task_id="beat-1")
    job = Job.objects.get()
    assert (job.celery_task_id, job.status, job.attempts) == ("beat-1", Job.Status.SUCCEEDED, 1)


# -- refits -----------------------------------------------------------------------------------------
def test_refit_task_activates_a_new_version_that_keeps_profiled_llms_routable(routing_data, sent):
    with FakeOpenAI(policy=routing_data.expert_policy()) as server:
        fake = run_profile_job(register_fake(server)).llm
    tasks.refit_routing_state.apply()
    job = Job.objects.get(kind=Job.Kind.REFIT)
    assert job.status == Job.Status.SUCCEEDED, job.error
    new = RoutingState.objects.get(is_active=True)
    assert new.version == 2 and job.state == new and job.result["strategy"] == "uniroute_kmeans"
    assert new.params == routing_data.state.params  # same strategy and parameters as the active one
    assert LLMProfile.objects.filter(state=new, llm=fake).exists()
    assert StateCentroid.objects.filter(state=new).count() == 3


def test_a_refit_that_fails_halfway_leaves_the_old_state_active_and_nothing_half_written(
    routing_data, sent, monkeypatch
):
    from routing.services import state as services

    real_store, calls = services._store_profile, []

    def failing_store(**kwargs):
        calls.append(kwargs["llm"].name)
        if len(calls) == 3:
            raise RuntimeError("worker died while storing profiles")
        return real_store(**kwargs)

    monkeypatch.setattr(services, "_store_profile", failing_store)
    counts = (RoutingState.objects.count(), StateCentroid.objects.count(), LLMProfile.objects.count())
    tasks.refit_routing_state.apply()
    assert Job.objects.get(kind=Job.Kind.REFIT).status == Job.Status.FAILED
    assert (RoutingState.objects.count(), StateCentroid.objects.count(), LLMProfile.objects.count()) == counts
    assert RoutingState.objects.get(is_active=True) == routing_data.state


def test_reconcile_profiles_llms_whose_outcomes_arrived_during_a_refit(routing_data):
    late = llm_register(name="late")
    Outcome.objects.bulk_create(Outcome(llm=late, prompt=p, score=1.0) for p in routing_data.validation_prompts()[:5])
    assert routing_state_profiles_reconcile(state=routing_data.state) == ["late"]
    assert LLMProfile.objects.get(state=routing_data.state, llm=late).n_validation_outcomes == 5
    assert routing_state_profiles_reconcile(state=routing_data.state) == []


def test_reprofile_all_queues_one_profiling_job_per_llm_that_needs_one(
    routing_data, sent, django_capture_on_commit_callbacks
):
    with FakeOpenAI(policy=routing_data.expert_policy()) as server:
        api_llm = register_fake(server)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.reprofile_all_llms.apply(kwargs={"refresh_older_than_days": 28})
    parent = Job.objects.get(kind=Job.Kind.REPROFILE_ALL)
    assert parent.status == Job.Status.SUCCEEDED and [q["llm"] for q in parent.result["queued"]] == [api_llm.name]
    child = Job.objects.get(kind=Job.Kind.PROFILE_LLM)
    assert child.arguments == {"refresh_older_than_days": 28} and [name for name, _ in sent] == ["routing.profile_llm"]


# -- schedules --------------------------------------------------------------------------------------
def test_default_schedules_are_created_once_and_admin_edits_are_kept(db):
    PeriodicTask.objects.filter(name__in=[s.name for s in DEFAULT_SCHEDULES]).delete()
    assert schedules_ensure() == [s.name for s in DEFAULT_SCHEDULES]
    refit = PeriodicTask.objects.get(task="routing.refit_routing_state")
    assert (refit.crontab.hour, refit.crontab.minute, refit.enabled) == ("2", "30", True)
    reprofile = PeriodicTask.objects.get(task="routing.reprofile_all_llms")
    assert (reprofile.crontab.day_of_week, reprofile.crontab.hour) == ("0", "3")
    refit.enabled = False
    refit.kwargs = '{"strategy": "uniroute_kmeans"}'
    refit.save()
    assert schedules_ensure() == []
    refit.refresh_from_db()
    assert not refit.enabled and refit.kwargs == '{"strategy": "uniroute_kmeans"}'
    assert PeriodicTask.objects.filter(name__in=[s.name for s in DEFAULT_SCHEDULES]).count() == len(DEFAULT_SCHEDULES)
    rollup = PeriodicTask.objects.get(task="routing.rollup_usage")
    assert (rollup.crontab.minute, rollup.crontab.hour) == ("5", "*")
    sweep = PeriodicTask.objects.get(task="routing.reclaim_budget_leases")
    assert (sweep.crontab.minute, sweep.crontab.hour, sweep.enabled) == ("*", "*", True)


def test_the_lease_sweep_charges_what_a_killed_web_process_held(db):
    status = budget_status_current(tenant=tenant_create(name="killed", budget_usd="8"))
    LeaseBook().take(status=status, amount=Decimal("0.01"))  # a process that never returns its lease
    assert tasks.reclaim_budget_leases.apply().get() == {"swept": 0}  # not expired yet: still its holder's
    BudgetLease.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert tasks.reclaim_budget_leases.apply().get() == {"swept": 1}
    assert tasks.reclaim_budget_leases.apply().get() == {"swept": 0}  # charged once
    period = BudgetPeriod.objects.get(id=status.period_id)
    # its admitted calls may have been billed: the 20 calls' estimates it held stay spent, not freed
    assert (period.leased_usd, period.spent_usd, period.unwritten_usd) == (0, Decimal("0.20"), Decimal("0.20"))


def test_refit_can_fit_the_learned_map_and_the_next_nightly_refit_keeps_it(routing_data, sent):
    tasks.refit_routing_state.apply(
        kwargs={"strategy": "uniroute_learnedmap", "params": {"n_clusters": 3, "max_iter": 50}}
    )
    learned = RoutingState.objects.get(is_active=True)
    assert (learned.strategy, learned.version, learned.params["n_clusters"]) == ("uniroute_learnedmap", 2, 3)
    tasks.refit_routing_state.apply()  # what beat sends: no arguments
    nightly = RoutingState.objects.get(is_active=True)
    assert (nightly.strategy, nightly.version, nightly.params) == ("uniroute_learnedmap", 3, learned.params)
    assert nightly.profiles.count() == LLM.objects.count()
    assert list(Job.objects.filter(kind=Job.Kind.REFIT).values_list("status", flat=True)) == [Job.Status.SUCCEEDED] * 2
