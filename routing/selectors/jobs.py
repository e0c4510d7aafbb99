"""Reads of background jobs: the newest first, filtered as the jobs API asks; one job."""

from __future__ import annotations

from routing.models import Job


def job_list(
    *, kind: str | None = None, status: str | None = None, llm_name: str | None = None, limit: int
) -> list[Job]:
    jobs = Job.objects.select_related("llm", "state").order_by("-created_at", "-id")
    if kind is not None:
        jobs = jobs.filter(kind=kind)
    if status is not None:
        jobs = jobs.filter(status=status)
    if llm_name is not None:
        jobs = jobs.filter(llm__name=llm_name)
    return list(jobs[:limit])


def job_get(*, job_id: int) -> Job | None:
    return Job.objects.select_related("llm", "state").filter(id=job_id).first()
