"""The default periodic jobs, stored as django-celery-beat rows so they can be edited in the admin.

``schedules_ensure`` creates the rows that are missing and never touches existing ones: a schedule
changed (or disabled) in the admin stays as it was. A data migration calls it with the historical
models, so ``migrate`` alone sets the defaults up; ``setup_demo`` may call it again at no cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DefaultSchedule:
    name: str
    task: str
    crontab: dict | None = None  # minute, hour, day_of_week, day_of_month, month_of_year (UTC)
    every_seconds: int | None = None  # instead of a crontab: an interval (crontabs go no finer than a minute)
    kwargs: dict = field(default_factory=dict)
    description: str = ""


DEFAULT_SCHEDULES = (
    DefaultSchedule(
        name="routerhub: send pending jobs",
        task="routing.resend_pending_jobs",
        crontab={"minute": "*/5", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"},
        description=(
            "Every 5 minutes. Sends the tasks of jobs still pending (created while the broker was unreachable) "
            "for longer than ROUTERHUB_JOB_RESEND_AFTER_SECONDS, and of queued jobs untouched for 30 minutes "
            "(their message lost with a broker restarted without persistence)."
        ),
    ),
    DefaultSchedule(
        name="routerhub: return expired budget leases",
        task="routing.reclaim_budget_leases",
        crontab={"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"},
        description=(
            "Every minute. Returns to their budget the leases of web processes that stopped renewing them "
            "(a process killed while holding one) once they have expired, a minute after their last renewal."
        ),
    ),
    DefaultSchedule(
        name="routerhub: re-profile all active LLMs",
        task="routing.reprofile_all_llms",
        crontab={"minute": "0", "hour": "3", "day_of_week": "0", "day_of_month": "*", "month_of_year": "*"},
        description=(
            "Weekly (Sunday 03:00 UTC). Queues a profiling job per active LLM with an API (fills in validation "
            "prompts it has no answer for, then recomputes its profile) and per LLM whose imported outcomes "
            'changed. kwargs take profiling options, e.g. {"refresh_older_than_days": 28} to ask again '
            'answers older than four weeks, or {"max_cost_usd": 5}.'
        ),
    ),
    DefaultSchedule(
        name="routerhub: refit the routing state",
        task="routing.refit_routing_state",
        crontab={"minute": "30", "hour": "2", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"},
        description=(
            "Nightly (02:30 UTC). Refits the active strategy (K-means centroids or LearnedMap) on the current "
            "train split, profiles every LLM, and switches all processes to it atomically. kwargs: "
            '{"prompt_set_id": 1, "strategy": "uniroute_learnedmap", "params": {...}} to change what is fitted.'
        ),
    ),
    DefaultSchedule(
        name="routerhub: apply new evidence",
        task="routing.apply_evidence",
        every_seconds=30,
        description=(
            "Every 30 seconds. Profiles again, on the active routing state, each LLM with evidence (trusted "
            "tenants' feedback, graders' verdicts) it has not yet applied, so routing learns from it within a "
            "minute without a refit; each profile is recorded as an evidence application."
        ),
    ),
    DefaultSchedule(
        name="routerhub: send shadow evaluations",
        task="routing.send_shadow_evaluations",
        every_seconds=10,
        description=(
            "Every 10 seconds. Sends the task of each shadow evaluation the gateway recorded since (the gateway "
            "writes the row and nothing else), and again of each still pending (or compared and not judged) a "
            "minute after its task was sent: the broker was unreachable, or lost the message. An evaluation is "
            "never run twice."
        ),
    ),
    DefaultSchedule(
        name="routerhub: roll up daily usage",
        task="routing.rollup_usage",
        crontab={"minute": "5", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"},
        description=(
            "Hourly (minute 5). Sums the decisions of each closed UTC day per tenant and LLM into the daily "
            "roll-ups the dashboard reads, and sums the last 7 days again to take in late feedback."
        ),
    ),
)


def schedules_ensure(
    *, crontab_model=None, periodic_task_model=None, changes_model=None, interval_model=None
) -> list[str]:
    """Create the default periodic tasks that do not exist yet; returns the names created.

    A migration passes historical models, which send no signals: it passes ``changes_model``
    (``PeriodicTasks``) too, so a running beat notices the new rows.
    """
    if crontab_model is None or periodic_task_model is None:
        from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

        crontab_model, periodic_task_model, interval_model = CrontabSchedule, PeriodicTask, IntervalSchedule
    created = []
    for schedule in DEFAULT_SCHEDULES:
        if periodic_task_model.objects.filter(name=schedule.name).exists():
            continue
        when = {}
        if schedule.every_seconds is not None:
            when["interval"], _ = interval_model.objects.get_or_create(every=schedule.every_seconds, period="seconds")
        else:
            when["crontab"], _ = crontab_model.objects.get_or_create(**schedule.crontab, timezone="UTC")
        periodic_task_model.objects.create(
            name=schedule.name,
            task=schedule.task,
            **when,
            kwargs=json.dumps(schedule.kwargs),
            description=schedule.description,
            enabled=True,
        )
        created.append(schedule.name)
    if created and changes_model is not None:
        from django.utils import timezone

        changes_model.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})
    return created


def schedules_ensure_in_migration(apps, schema_editor) -> None:
    """``RunPython`` target of the migrations that add default schedules: :func:`schedules_ensure` with
    the migration's historical models."""
    schedules_ensure(
        crontab_model=apps.get_model("django_celery_beat", "CrontabSchedule"),
        periodic_task_model=apps.get_model("django_celery_beat", "PeriodicTask"),
        changes_model=apps.get_model("django_celery_beat", "PeriodicTasks"),
        interval_model=apps.get_model("django_celery_beat", "IntervalSchedule"),
    )
