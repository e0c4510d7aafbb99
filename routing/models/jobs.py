"""Background jobs (profiling, refits) and their progress, visible in the admin and the staff API."""

from __future__ import annotations

from django.db import models

from registry.models import LLM


class Job(models.Model):
    class Kind(models.TextChoices):
        PROFILE_LLM = "profile_llm", "profile an LLM"
        REFIT = "refit", "refit the routing state"
        REPROFILE_ALL = "reprofile_all", "re-profile all active LLMs"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    llm = models.ForeignKey(LLM, on_delete=models.CASCADE, null=True, blank=True, related_name="jobs")
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

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        target = f" {self.llm}" if self.llm_id else ""
        return f"{self.get_kind_display()}{target}: {self.status}"
