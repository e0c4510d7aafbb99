"""Celery tasks: thin wrappers that take ids, run a service and record the outcome on a Job row.

Every task is safe to deliver twice (``acks_late``: a worker killed mid-task gets its message back).
Job bookkeeping — one runner at a time, finished jobs never rerun, bounded deliveries — is in
``routing/services/jobs.py``; the work is in ``routing/services/profiling.py`` and
``routing/services/state.py``.

Transient failures (the provider unreachable after the client's own retries, the database gone,
the soft time limit) put the job back to queued and retry the task with exponential backoff; a
retried profiling job asks only the prompts it has no answer for yet. Anything else fails the job
with the reason, visible in the admin and the staff API.
"""

from __future__ import annotations

import logging
import random
from uuid import UUID

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError

from registry.models import LLM, PromptSet
from routing.exceptions import JobBusy, NoActiveRoutingState, RoutingError
from routing.models import Job
from routing.profiling.client import ProviderConfigurationError, TransientProviderError
from routing.selectors.state import routing_state_active
from routing.services import budget_leases, jobs, shadow
from routing.services.evidence import evidence_apply
from routing.services.jobs import TASK_NAME_OF_KIND
from routing.services.profiling import ProfilingOptions, llm_profile_run, llms_to_reprofile
from routing.services.state import routing_state_refit
from routing.services.usage import usage_rollup_due
from routing.services.validation_sets import validation_set_profile

logger = logging.getLogger(__name__)

TRANSIENT = (TransientProviderError, OperationalError, InterfaceError, SoftTimeLimitExceeded)
# Errors a retry cannot fix: the job fails with the message, without a traceback in the log.
EXPECTED = (
    NoActiveRoutingState,
    RoutingError,
    ProviderConfigurationError,
    ValueError,
    LLM.DoesNotExist,
    PromptSet.DoesNotExist,
)
MAX_RETRIES = 6
MAX_BACKOFF_SECONDS = 600

# Time limits stay under the broker's visibility timeout (settings.CELERY_BROKER_TRANSPORT_OPTIONS).
# Profiling a 1,200-prompt validation split at 8 calls in flight and ~5 s a call takes ~13 min;
# a job cut by the soft limit is retried and resumes, so the limit bounds one attempt, not the job.
PROFILE_TIME_LIMITS = {"soft_time_limit": 55 * 60, "time_limit": 60 * 60}
REFIT_TIME_LIMITS = {"soft_time_limit": 25 * 60, "time_limit": 30 * 60}
TASK_OPTIONS = {"bind": True, "acks_late": True, "max_retries": MAX_RETRIES}


def _retry_countdown(retries: int) -> float:
    base = settings.ROUTERHUB_TASK_RETRY_BACKOFF_SECONDS
    return min(MAX_BACKOFF_SECONDS, base * 2**retries) * random.uniform(0.5, 1.0)


def _run(task, job: Job | None, work) -> dict | None:
    """Run ``work(job) -> (result, state)`` under the job's lock and record how it ended."""
    if job is None:
        return None  # deleted since it was queued
    try:
        with jobs.job_running(job=job, task_id=task.request.id) as running:
            if running is None:
                return None
            result, state = work(running)
            jobs.job_succeed(job=running, result=result, state=state)
            return result
    except JobBusy as exc:
        # The other runner records the job's outcome; this delivery only checks back later.
        if task.request.retries >= task.max_retries:
            return None
        raise task.retry(exc=exc, countdown=_retry_countdown(task.request.retries)) from exc
    except TRANSIENT as exc:
        if task.request.retries >= task.max_retries:
            jobs.job_fail(job=job, error=f"gave up after {task.request.retries + 1} tries: {exc}")
            raise
        logger.warning("job %s: transient failure, retrying: %s", job.id, exc)
        try:
            jobs.job_retry_later(job=job, error=f"try {task.request.retries + 1} stopped: {exc}")
        except (OperationalError, InterfaceError):
            pass  # the database is what failed: the retry records it once it is back
        raise task.retry(exc=exc, countdown=_retry_countdown(task.request.retries)) from exc
    except EXPECTED as exc:
        logger.warning("job %s failed: %s", job.id, exc, exc_info=True)
        jobs.job_fail(job=job, error=str(exc))
        return {"error": str(exc)}
    except Exception as exc:
        jobs.job_fail(job=job, error=f"{type(exc).__name__}: {exc}")
        raise


@shared_task(name=TASK_NAME_OF_KIND[Job.Kind.PROFILE_LLM], **TASK_OPTIONS, **PROFILE_TIME_LIMITS)
def profile_llm(self, llm_id: int, job_id: int | None = None) -> dict | None:
    """Make an LLM routable: collect its validation outcomes (if it has an API), compute Ψ, no refit."""
    job = jobs.job_for_task(kind=Job.Kind.PROFILE_LLM, job_id=job_id, task_id=self.request.id, llm_id=llm_id)

    def work(job: Job):
        progress = lambda done, total: jobs.job_progress(job=job, done=done, total=total)  # noqa: E731
        profile, report = llm_profile_run(
            llm=LLM.objects.get(id=job.llm_id),
            options=ProfilingOptions.from_arguments(job.arguments),
            spent_since=job.created_at,
            progress=progress,
        )
        return report.as_dict(), profile.state

    return _run(self, job, work)


@shared_task(name=TASK_NAME_OF_KIND[Job.Kind.REFIT], **TASK_OPTIONS, **REFIT_TIME_LIMITS)
def refit_routing_state(
    self,
    job_id: int | None = None,
    prompt_set_id: int | None = None,
    strategy: str | None = None,
    params: dict | None = None,
) -> dict | None:
    """Refit the routing state from the current data and activate it atomically (nightly, or on demand)."""
    arguments = {
        k: v
        for k, v in {"prompt_set_id": prompt_set_id, "strategy": strategy, "params": params}.items()
        if v is not None
    }
    job = jobs.job_for_task(kind=Job.Kind.REFIT, job_id=job_id, task_id=self.request.id, arguments=arguments)

    def work(job: Job):
        arguments = job.arguments or {}
        prompt_set = PromptSet.objects.get(id=arguments["prompt_set_id"]) if arguments.get("prompt_set_id") else None
        jobs.job_progress(job=job, done=0, total=1)
        state, reprofiled = routing_state_refit(
            prompt_set=prompt_set, strategy=arguments.get("strategy"), params=arguments.get("params")
        )
        result = {
            "state_version": state.version,
            "strategy": state.strategy,
            "prompt_set": state.prompt_set.name,
            "n_train_prompts": state.n_train_prompts,
            "n_validation_prompts": state.n_validation_prompts,
            "profiles": state.profiles.count(),
            "fit_seconds": round(state.fit_seconds, 3),
            "reprofiled": reprofiled,
        }
        return result, state

    return _run(self, job, work)


@shared_task(name=TASK_NAME_OF_KIND[Job.Kind.REPROFILE_ALL], **TASK_OPTIONS, soft_time_limit=5 * 60, time_limit=6 * 60)
def reprofile_all_llms(self, job_id: int | None = None, **profiling_arguments) -> dict | None:
    """Queue a profiling job for every active LLM that needs one (weekly); each runs as its own task."""
    job = jobs.job_for_task(
        kind=Job.Kind.REPROFILE_ALL, job_id=job_id, task_id=self.request.id, arguments=profiling_arguments
    )

    def work(job: Job):
        ProfilingOptions.from_arguments(job.arguments)  # fail here, once, on a mistyped option
        state = routing_state_active()
        llms = llms_to_reprofile(state=state)
        jobs.job_progress(job=job, done=0, total=len(llms))
        queued = []
        for i, llm in enumerate(llms, start=1):
            child, _ = jobs.job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm, arguments=job.arguments)
            queued.append({"llm": llm.name, "job": child.id})
            jobs.job_progress(job=job, done=i, total=len(llms))
        return {"state_version": state.version, "queued": queued}, state

    return _run(self, job, work)


@shared_task(name=TASK_NAME_OF_KIND[Job.Kind.PROFILE_VALIDATION_SET], **TASK_OPTIONS, **PROFILE_TIME_LIMITS)
def profile_validation_set(self, job_id: int | None = None, **arguments) -> dict | None:
    """Profile every active LLM on a validation set (answers once per LLM, judged), within one cost cap;
    then, when asked, fit and activate a routing state profiled on it."""
    job = jobs.job_for_task(
        kind=Job.Kind.PROFILE_VALIDATION_SET, job_id=job_id, task_id=self.request.id, arguments=arguments
    )

    def work(job: Job):
        arguments = job.arguments or {}
        report, state = validation_set_profile(
            prompt_set=PromptSet.objects.get(id=arguments["prompt_set_id"]),
            max_cost_usd=arguments.get("max_cost_usd"),
            activate=bool(arguments.get("activate")),
            spent_since=job.created_at,
            progress=lambda done, total: jobs.job_progress(job=job, done=done, total=total),
        )
        return report.as_dict(), state

    return _run(self, job, work)


@shared_task(name="routing.resend_pending_jobs", acks_late=True, soft_time_limit=60, time_limit=90)
def resend_pending_jobs() -> dict:
    """Periodic sweep (every few minutes, a default beat schedule): send again the jobs that never
    reached the broker (it was down when they were created) and queued jobs whose message was lost."""
    from datetime import timedelta

    result = jobs.jobs_resend(pending_for=timedelta(seconds=settings.ROUTERHUB_JOB_RESEND_AFTER_SECONDS))
    if result["sent"] or result["not_sent"]:
        logger.info("resent jobs %s; still not sent %s", result["sent"], result["not_sent"])
    return result


@shared_task(name="routing.reclaim_budget_leases", acks_late=True, soft_time_limit=60, time_limit=90)
def reclaim_budget_leases() -> dict:
    """Periodic sweep (every minute, a default beat schedule): charge as spent what the leases of web
    processes that stopped renewing them still hold — killed while holding one, their admitted calls
    never written (``budget_leases.reclaim_expired``). Idempotent: a lease is charged once."""
    swept = budget_leases.reclaim_expired()
    if swept:
        logger.warning("charged %d expired budget lease(s) of stopped web processes as spent", swept)
    return {"swept": swept}


@shared_task(name="routing.apply_evidence", acks_late=True, soft_time_limit=5 * 60, time_limit=6 * 60)
def apply_evidence() -> dict:
    """Periodic (every 30 s, a default beat schedule): profile again, on the active state, each LLM with
    evidence it has not taken in (trusted feedback, graders' verdicts) — no refit, and routing follows within
    a second of it. Idempotent: a second run finds nothing new; one run at a time. Housekeeping, no Job row."""
    try:
        return evidence_apply().as_dict()
    except NoActiveRoutingState:
        return {"state_version": None, "applied": [], "skipped": "no routing state has been fitted yet"}


@shared_task(name="routing.rollup_usage", acks_late=True, soft_time_limit=10 * 60, time_limit=12 * 60)
def rollup_usage() -> dict:
    """Sum decisions into the dashboard's daily roll-ups (closed days, and today to the last full hour) (hourly; housekeeping, no Job row)."""
    return {"days": [day.isoformat() for day in usage_rollup_due()]}


@shared_task(
    name=shadow.TASK_NAME,
    bind=True,
    acks_late=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=shadow.CLAIM_SECONDS - 60,
    time_limit=shadow.CLAIM_SECONDS,  # a claim outlives any delivery: services/shadow.py relies on it
)
def shadow_evaluate(self, evaluation_id: str) -> dict | None:
    """Choose a shadowed gateway call's comparison LLM (the tenant's, else routing's choice at λ = 0),
    ask it and judge its answer against the routed one (``services/shadow.py``; no Job row). Delivered
    twice, it never calls the comparison LLM twice; a database failure retries it, resuming where it
    stopped."""
    try:
        ended = shadow.shadow_evaluation_run(evaluation_id=UUID(evaluation_id))
    except (OperationalError, InterfaceError) as exc:
        if self.request.retries >= self.max_retries:
            raise
        raise self.retry(exc=exc, countdown=_retry_countdown(self.request.retries)) from exc
    return {"evaluation": evaluation_id, "ended": ended}


@shared_task(name="routing.send_shadow_evaluations", acks_late=True, soft_time_limit=60, time_limit=90)
def send_shadow_evaluations() -> dict:
    """Periodic sweep (every 10 s, a default beat schedule): send the task of each shadow evaluation the
    gateway wrote since, and again of each still running a minute after its task was sent — the broker
    was unreachable, or lost the message (``shadow.shadow_send_due``). Idempotent: an evaluation is
    never evaluated twice. Housekeeping, no Job row."""
    result = shadow.shadow_send_due()
    if result["not_sent"]:
        logger.warning("could not send %d shadow evaluation(s); sent again in a minute", len(result["not_sent"]))
    return {key: [str(evaluation_id) for evaluation_id in ids] for key, ids in result.items()}


TASK_OF_KIND = {
    Job.Kind.PROFILE_LLM: profile_llm,
    Job.Kind.REFIT: refit_routing_state,
    Job.Kind.REPROFILE_ALL: reprofile_all_llms,
    Job.Kind.PROFILE_VALIDATION_SET: profile_validation_set,
}
