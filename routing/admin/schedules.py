"""django-celery-beat's periodic-task admin, with permissions on its actions.

Its actions ship without ``allowed_permissions``, so any staff user who may *view* schedules could
enable, disable or run them (running one queues a refit or re-profiling of every LLM). Re-registered
here, the way ``routing/admin/llms.py`` extends the registry's LLM admin.
"""

from django.contrib import admin
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(BeatPeriodicTaskAdmin):
    def has_run_permission(self, request):
        return request.user.has_perms(["django_celery_beat.change_periodictask", "routing.add_job"])

    @admin.action(description="Enable selected tasks", permissions=["change"])
    def enable_tasks(self, request, queryset):
        return super().enable_tasks(request, queryset)

    @admin.action(description="Disable selected tasks", permissions=["change"])
    def disable_tasks(self, request, queryset):
        return super().disable_tasks(request, queryset)

    @admin.action(description="Toggle activity of selected tasks", permissions=["change"])
    def toggle_tasks(self, request, queryset):
        return super().toggle_tasks(request, queryset)

    @admin.action(description="Run selected tasks now", permissions=["run"])
    def run_tasks(self, request, queryset):
        return super().run_tasks(request, queryset)
