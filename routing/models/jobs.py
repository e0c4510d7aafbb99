"""Background jobs (profiling, refits) and their progress, visible in the admin and the staff API."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from registry.constraints import valid_choice
from registry.models import LLM
from routing.models.state import RoutingState


class JobKind(models.TextChoices):
    PROFILE_LLM = "profile_llm", "profile an LLM"
    REFIT = "refit", "refit the routing state"
    REPROFILE_ALL = "reprofile_all", "re-profile all active LLMs"
    PROFILE_VALIDATION_SET = "validation_profile", "profile every active LLM on a validation set"


class JobStatus(models.TextChoices):
    # Created, but its task is not with the broker yet (the broker was unreachable): the periodic
    # sweep (routing.resend_pending_jobs) sends it once the broker answers again.
    PENDING = "pending", "pending (not sent to the broker yet)"
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"


class Job(models.Model):
    Kind = JobKind
    Status = JobStatus
    ACTIVE_STATUSES = (Status.PENDING, Status.QUEUED, Status.RUNNING)

    kind = models.CharField(max_length=20, choices=Kind.choices)
    llm = models.ForeignKey(LLM, on_delete=models.CASCADE, null=True, blank=True, related_name="jobs")
    state = models.ForeignKey(
        RoutingState,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="jobs",
        help_text="The routing state the job profiled on (profile) or produced (refit).",
    )
    arguments = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True)
    celery_task_id = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Touched on every progress write: a queued or running job untouched for long has lost its
    # task (a broker restarted without persistence) and is sent again when asked for.
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One pending, queued or running job per kind and LLM (and one refit at a time): enqueueing twice
            # returns the job already on its way instead of doing the work twice.
            models.UniqueConstraint(
                fields=["kind", "llm"],
                condition=Q(status__in=["pending", "queued", "running"]),
                nulls_distinct=False,
                name="%(app_label)s_%(class)s_unique_active_kind_llm",
            ),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_progress_within_total",
                condition=Q(progress_done__lte=models.F("progress_total")),
            ),
            valid_choice("kind", JobKind),
            valid_choice("status", JobStatus),
        ]
        indexes = [models.Index(fields=["kind", "status"], name="routing_job_kind_status")]

    def __str__(self) -> str:
        target = f" {self.llm}" if self.llm_id else ""
        return f"{self.get_kind_display()}{target}: {self.status}"
