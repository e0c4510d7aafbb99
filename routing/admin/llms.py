"""The registry's LLM admin, extended with what routing adds: profiling a new or changed LLM.

The registry knows nothing of routing; this module re-registers its LLM admin with profiling
hooked in, the way apps extend ``django.contrib.auth``'s ``UserAdmin``.
"""

from django.contrib import admin, messages

from registry.admin import LLMAdmin as RegistryLLMAdmin
from registry.models import LLM
from routing.services.jobs import llm_profile_enqueue

admin.site.unregister(LLM)


@admin.register(LLM)
class LLMAdmin(RegistryLLMAdmin):
    actions = (*RegistryLLMAdmin.actions, "profile_now")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change:  # a new LLM becomes routable once profiled (queued after the save commits)
            job, _ = llm_profile_enqueue(llm=obj)
            self.message_user(
                request,
                f"Profiling {obj} is queued (job #{job.id}); it becomes routable when the job finishes.",
                messages.INFO,
            )

    def has_profile_permission(self, request):
        return request.user.has_perms(["registry.change_llm", "routing.add_job"])

    @admin.action(description="Profile now (routable without a refit)", permissions=["profile"])
    def profile_now(self, request, queryset):
        for llm in queryset:
            job, created = llm_profile_enqueue(llm=llm)
            note = "queued" if created else "already queued or running"
            self.message_user(request, f"Profiling {llm}: job #{job.id} {note}.", messages.SUCCESS)
