"""Admin for background jobs: read-only records of the workers; "Run again" queues a new job."""

from django.contrib import admin, messages

from routing.admin.base import ReadOnlyAdmin
from routing.models import Job
from routing.services import jobs


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    deletable = True
    list_display = (
        "id",
        "kind",
        "llm",
        "status",
        "progress",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
        "short_error",
    )
    list_filter = ("kind", "status")
    search_fields = ("llm__name", "celery_task_id", "error")
    list_select_related = ("llm", "state")
    date_hierarchy = "created_at"
    actions = ("run_again",)
    fields = (
        "kind",
        "llm",
        "state",
        "status",
        "progress",
        "attempts",
        "arguments",
        "result",
        "error",
        "celery_task_id",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="progress")
    def progress(self, job):
        if not job.progress_total:
            return "—"
        return f"{job.progress_done:,}/{job.progress_total:,} ({100 * job.progress_done / job.progress_total:.0f}%)"

    @admin.display(description="error")
    def short_error(self, job):
        return job.error[:120] + ("…" if len(job.error) > 120 else "")

    def has_run_again_permission(self, request):
        return request.user.has_perm("routing.add_job")

    @admin.action(description="Run again (queue a new job with the same arguments)", permissions=["run_again"])
    def run_again(self, request, queryset):
        for job in queryset:
            again, created = jobs.job_enqueue(kind=job.kind, llm=job.llm, arguments=job.arguments)
            note = "queued" if created else "already queued or running"
            self.message_user(
                request,
                f"{job.get_kind_display()}{f' {job.llm}' if job.llm_id else ''}: job #{again.id} {note}.",
                messages.SUCCESS,
            )
