"""Jobs: the Postgres record of a background task — what it does, how far it got, how it ended.

Services for the tasks (start, progress, finish), the admin and the staff API (enqueue). The rules
that make a task safe to deliver twice live here:

- ``job_enqueue`` creates the row (``pending``) and sends the task only after the transaction
  commits (then ``queued``), and returns the job already on its way for the same kind and LLM
  instead of a second one (a database constraint backs this up). When the broker cannot be reached
  the job stays ``pending`` and ``jobs_resend`` (a periodic beat task) sends it later.
- ``job_running`` holds a PostgreSQL advisory lock for the job while it runs, so two deliveries of
  one job (a retry racing a redelivery) never run side by side; the lock goes with the database
  session, so a worker killed with SIGKILL releases it.
- A finished job is never run again; a job delivered ``MAX_ATTEMPTS`` times (worker crashes
  included, which Celery's own retry count does not see) is failed instead of run again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial

from celery import current_app
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from registry.models import LLM
from routing.exceptions import JobBusy
from routing.models import Job, RoutingState

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
# A queued or running job whose row has not moved for this long has lost its task (a broker restart
# without persistence, a purged queue); asking for the job again sends its task again. Profiling
# writes progress at least every few seconds, so this is far beyond any live job's silence.
STALE_AFTER = timedelta(minutes=30)
# First key of the two-int advisory lock ("RJ"), keeping routerhub's locks apart from others'.
ADVISORY_LOCK_NAMESPACE = 0x524A
FINISHED = (Job.Status.SUCCEEDED, Job.Status.FAILED)
# The Celery task that runs each kind of job (``routing/tasks.py`` registers them under these names;
# jobs are sent by name, so this module need not import the tasks that import it).
TASK_NAME_OF_KIND = {
    Job.Kind.PROFILE_LLM: "routing.profile_llm",
    Job.Kind.REFIT: "routing.refit_routing_state",
    Job.Kind.REPROFILE_ALL: "routing.reprofile_all_llms",
    Job.Kind.PROFILE_VALIDATION_SET: "routing.profile_validation_set",
}


def job_enqueue(*, kind: str, llm: LLM | None = None, arguments: dict | None = None) -> tuple[Job, bool]:
    """Queue a job and send its task once the surrounding transaction commits.

    Returns ``(job, created)``. When a job of the same kind for the same LLM is already pending,
    queued or running, that job is returned (``created`` False) — and its task sent again if it
    was never sent or went stale.
    """
    with transaction.atomic():
        existing = _active_job(kind=kind, llm=llm, lock=True)
        if existing is not None:
            # pending with an error: a send was tried and the broker was down; try again now
            unsent = existing.status == Job.Status.PENDING and existing.error
            if unsent or timezone.now() - existing.updated_at > STALE_AFTER:
                logger.warning(
                    "job %s looks lost (untouched since %s): sending its task again", existing.id, existing.updated_at
                )
                existing.save(update_fields=["updated_at"])
                transaction.on_commit(partial(_send, existing.id))
            return existing, False
        try:
            with transaction.atomic():  # a savepoint: a concurrent enqueue may win the constraint
                job = Job.objects.create(
                    kind=kind,
                    llm=llm,
                    arguments=arguments or {},
                    status=Job.Status.PENDING,
                    celery_task_id=str(uuid.uuid4()),
                )
        except IntegrityError:
            return _active_job(kind=kind, llm=llm, lock=False), False
        transaction.on_commit(partial(_send, job.id))
    return job, True


def llm_profile_enqueue(*, llm: LLM, arguments: dict | None = None) -> tuple[Job, bool]:
    """Queue profiling of ``llm`` (call it when an LLM is registered: admin, staff API, shell)."""
    return job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm, arguments=arguments)


def routing_state_refit_enqueue(
    *, prompt_set_id: int | None = None, strategy: str | None = None, params: dict | None = None
) -> tuple[Job, bool]:
    """Queue a refit (defaults: the active state's prompt set, strategy and parameters)."""
    arguments = {
        k: v
        for k, v in {"prompt_set_id": prompt_set_id, "strategy": strategy, "params": params}.items()
        if v is not None
    }
    return job_enqueue(kind=Job.Kind.REFIT, arguments=arguments)


def _active_job(*, kind: str, llm: LLM | None, lock: bool) -> Job | None:
    jobs = Job.objects.filter(kind=kind, llm=llm, status__in=Job.ACTIVE_STATUSES)
    return (jobs.select_for_update() if lock else jobs).first()


def _send(job_id: int) -> bool:
    """Send the job's task; True when the broker took it.

    A pending job becomes queued. A broker that cannot be reached leaves the job pending, with the
    reason, for ``jobs_resend`` to send later: neither the request nor the job fails for it.
    """
    job = Job.objects.filter(id=job_id).first()
    if job is None or job.status in FINISHED:
        return False
    task = current_app.tasks[TASK_NAME_OF_KIND[job.kind]]
    kwargs = {"job_id": job.id}
    if job.kind == Job.Kind.PROFILE_LLM:
        kwargs["llm_id"] = job.llm_id
    try:
        task.apply_async(
            kwargs=kwargs,
            task_id=job.celery_task_id,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except Exception as exc:  # kombu raises several types for an unreachable broker
        logger.warning("could not send job %s to the broker, it stays pending: %s", job.id, exc)
        Job.objects.filter(id=job.id, status=Job.Status.PENDING).update(
            error=f"not sent yet, the broker is unreachable ({type(exc).__name__}: {exc}); "
            "it is sent again when the broker answers",
            updated_at=timezone.now(),
        )
        return False
    # Conditional: a worker may already have picked the task up and marked the job running.
    Job.objects.filter(id=job.id, status=Job.Status.PENDING).update(
        status=Job.Status.QUEUED, error="", updated_at=timezone.now()
    )
    return True


def jobs_resend(*, pending_for: timedelta, stale_for: timedelta = STALE_AFTER) -> dict[str, list[int]]:
    """Send again the tasks of jobs that are pending (never reached the broker) for ``pending_for``,
    and of queued jobs untouched for ``stale_for`` (their message lost with a broker that restarted
    without persistence). Run by the periodic ``routing.resend_pending_jobs`` task; safe to run
    at any time, since a job's task is idempotent.
    """
    now = timezone.now()
    due = Job.objects.filter(
        Q(status=Job.Status.PENDING, updated_at__lt=now - pending_for)
        | Q(status=Job.Status.QUEUED, updated_at__lt=now - stale_for)
    ).order_by("created_at")
    sent, failed = [], []
    for job_id, status in due.values_list("id", "status"):
        if status == Job.Status.QUEUED:
            Job.objects.filter(id=job_id).update(updated_at=now)  # not picked up again by the next sweep
        (sent if _send(job_id) else failed).append(job_id)
    return {"sent": sent, "not_sent": failed}


def job_for_task(
    *, kind: str, job_id: int | None, task_id: str, llm_id: int | None = None, arguments: dict | None = None
) -> Job | None:
    """The job a task delivery works on (None when it was deleted since).

    Tasks sent by ``job_enqueue`` carry their job's id. Tasks sent without one (celery beat, a
    shell) get a job keyed by their task id, so a redelivery of the same message finds it again;
    when a job of that kind is already on its way, the delivery joins it.
    """
    if job_id is not None:
        return Job.objects.filter(id=job_id).first()
    job = Job.objects.filter(celery_task_id=task_id).first()
    if job is not None:
        return job
    if llm_id is not None and not LLM.objects.filter(id=llm_id).exists():
        return None
    try:
        with transaction.atomic():
            return Job.objects.create(kind=kind, llm_id=llm_id, arguments=arguments or {}, celery_task_id=task_id)
    except IntegrityError:
        return Job.objects.filter(kind=kind, llm_id=llm_id, status__in=Job.ACTIVE_STATUSES).first()


@contextmanager
def job_running(*, job: Job, task_id: str) -> Iterator[Job | None]:
    """Lock the job and mark it running; yields None when there is nothing left to do.

    Raises ``JobBusy`` when another worker holds the job's lock.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [ADVISORY_LOCK_NAMESPACE, job.id])
        if not cursor.fetchone()[0]:
            raise JobBusy(f"job {job.id} is being run by another worker")
    try:
        yield _job_start(job_id=job.id, task_id=task_id)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [ADVISORY_LOCK_NAMESPACE, job.id])


def _job_start(*, job_id: int, task_id: str) -> Job | None:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(id=job_id).first()
        if job is None or job.status in FINISHED:
            return None  # deleted, or a duplicate delivery of a job that already ended
        if job.attempts >= MAX_ATTEMPTS:
            _finish(
                job,
                status=Job.Status.FAILED,
                error=f"gave up after {job.attempts} attempts; last error: {job.error or 'none recorded (worker lost?)'}",
            )
            return None
        job.status = Job.Status.RUNNING
        job.attempts += 1
        job.started_at = job.started_at or timezone.now()
        job.celery_task_id = task_id or job.celery_task_id
        job.save(update_fields=["status", "attempts", "started_at", "celery_task_id", "updated_at"])
        return job


def job_progress(*, job: Job, done: int, total: int) -> None:
    total = max(total, 0)
    done = min(max(done, 0), total)
    Job.objects.filter(id=job.id).update(progress_done=done, progress_total=total, updated_at=timezone.now())
    job.progress_done, job.progress_total = done, total


def job_succeed(*, job: Job, result: dict, state: RoutingState | None = None) -> None:
    total = max(job.progress_total, job.progress_done)
    _finish(
        job,
        status=Job.Status.SUCCEEDED,
        error="",
        result=result,
        state=state or job.state,
        progress_done=total,
        progress_total=total,
    )


def job_fail(*, job: Job, error: str) -> None:
    _finish(job, status=Job.Status.FAILED, error=error)


def job_retry_later(*, job: Job, error: str) -> None:
    """Back to queued, with the error that made this attempt stop (the admin shows it)."""
    Job.objects.filter(id=job.id).exclude(status__in=FINISHED).update(
        status=Job.Status.QUEUED, error=error[:10_000], updated_at=timezone.now()
    )


def _finish(job: Job, *, status: str, error: str, **fields) -> None:
    now = timezone.now()
    values = {"status": status, "error": error[:10_000], "finished_at": now, "updated_at": now, **fields}
    Job.objects.filter(id=job.id).update(**values)
    for key, value in values.items():
        setattr(job, key, value)


def job_run_inline(
    *, kind: str, arguments: dict, work: Callable[[Job], tuple[dict, RoutingState | None]], llm: LLM | None = None
) -> Job:
    """Run ``work(job) -> (result, state)`` in this process, recorded as a Job like a worker's.

    Commands that fit synchronously (``fit_router``, ``setup_demo``'s first fit) use it, so every fit
    shows in the Jobs list with its outcome and can be run again from there. Refuses to start while a
    job of the same kind (and LLM) is queued or running, as the unique constraint would.
    """
    with transaction.atomic():
        busy = _active_job(kind=kind, llm=llm, lock=True)
        if busy is not None:
            raise JobBusy(f"job #{busy.id} ({busy.get_kind_display()}) is already {busy.status}")
        now = timezone.now()
        job = Job.objects.create(
            kind=kind,
            llm=llm,
            arguments=arguments,
            status=Job.Status.RUNNING,
            attempts=1,
            started_at=now,
            celery_task_id=f"inline-{uuid.uuid4()}",
        )
    try:
        result, state = work(job)
    except BaseException as exc:
        job_fail(job=job, error=str(exc) or type(exc).__name__)
        raise
    job_succeed(job=job, result=result, state=state)
    return job
