"""Admin for background jobs, routing states and LLM profiles (imported by ``routing/admin.py``).

Jobs, states and profiles are records written by the workers: the admin shows them read-only and
acts on them only through services (queue a refit, re-run a failed job, activate an older state).
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count
from django.utils.html import format_html, format_html_join

from routing import jobs, services
from routing.models import Job, LLMProfile, RoutingState, StateCentroid


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "llm", "status", "progress", "attempts", "created_at", "started_at", "finished_at", "short_error")
    list_filter = ("kind", "status")
    search_fields = ("llm__name", "celery_task_id", "error")
    list_select_related = ("llm", "state")
    date_hierarchy = "created_at"
    actions = ("run_again",)
    fields = (
        "kind", "llm", "state", "status", "progress", "attempts", "arguments", "result", "error", "celery_task_id",
        "created_at", "started_at", "finished_at", "updated_at",
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

    @admin.action(description="Run again (queue a new job with the same arguments)")
    def run_again(self, request, queryset):
        for job in queryset:
            again, created = jobs.job_enqueue(kind=job.kind, llm=job.llm, arguments=job.arguments)
            note = "queued" if created else "already queued or running"
            self.message_user(request, f"{job.get_kind_display()}{f' {job.llm}' if job.llm_id else ''}: job #{again.id} {note}.", messages.SUCCESS)


class LLMProfileInline(admin.TabularInline):
    model = LLMProfile
    fields = ("llm", "n_validation_outcomes", "validation_error", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("validation_error",)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RoutingState)
class RoutingStateAdmin(ReadOnlyAdmin):
    list_display = ("version", "strategy", "prompt_set", "active", "revision", "profile_count", "n_train_prompts", "n_validation_prompts", "fit_seconds", "created_at", "activated_at")
    list_filter = ("is_active", "strategy", "prompt_set")
    list_select_related = ("prompt_set",)
    actions = ("refit", "activate")
    inlines = (LLMProfileInline,)
    fields = (
        "version", "strategy", "is_active", "revision", "prompt_set", "params", "tuning_report", "state", "embedder",
        "n_train_prompts", "n_validation_prompts", "centroid_count", "fit_seconds", "created_at", "activated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_profiles=Count("profiles", distinct=True))

    def has_delete_permission(self, request, obj=None):
        return obj is None or not obj.is_active  # deleting the active state would stop routing

    @admin.display(description="active", boolean=True, ordering="is_active")
    def active(self, state):
        return state.is_active

    @admin.display(description="profiles", ordering="_profiles")
    def profile_count(self, state):
        return state._profiles

    @admin.display(description="hyper-parameter tuning")
    def tuning_report(self, state):
        tuning = services.tuning_of(state)
        if not tuning:
            return "not tuned: fitted with the hyper-parameters as given"
        if tuning.get("score") is None:
            return f"{tuning.get('note')}; held fixed: {tuning.get('fixed') or 'nothing'}"
        best = sorted(tuning["candidates"], key=lambda c: -c["score"])[:5]
        rows = format_html_join("", "<tr><td>{}</td><td>{:.4f}</td></tr>", ((c["params"], c["score"]) for c in best))
        return format_html(
            "chosen {} (held fixed: {}) in {:.1f} s — {} candidates × {} folds of training LLMs, {} prompts to fit on, "
            "{} to score on; criterion: {}<table><tr><th>best candidates</th><th>score</th></tr>{}</table>",
            tuning["chosen"], tuning["fixed"] or "nothing", tuning["seconds"], len(tuning["candidates"]), tuning["folds"],
            tuning["fit_prompts"], tuning["score_prompts"], tuning["criterion"], rows,
        )

    @admin.display(description="K-means centroids")
    def centroid_count(self, state):
        return StateCentroid.objects.filter(state=state).count() or "—"

    @admin.action(description="Refit routing state (same data and strategy, hyper-parameters tuned again; activates when done)")
    def refit(self, request, queryset):
        for state in queryset:
            # Tuned states are tuned again (holding fixed what their fit held fixed).
            job, created = jobs.routing_state_refit_enqueue(
                prompt_set_id=state.prompt_set_id, strategy=state.strategy, params=services.fixed_params_of(state),
            )
            note = "queued" if created else "a refit is already queued or running"
            self.message_user(request, format_html("Refit of v{}: job #{} {}.", state.version, job.id, note), messages.SUCCESS)

    @admin.action(description="Activate the selected state (all processes switch within a second)")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one routing state to activate.", messages.ERROR)
            return
        state = queryset.get()
        services.routing_state_activate(state=state)
        self.message_user(request, f"Routing state v{state.version} is active.", messages.SUCCESS)


@admin.register(LLMProfile)
class LLMProfileAdmin(ReadOnlyAdmin):
    list_display = ("llm", "state", "n_validation_outcomes", "validation_error", "updated_at")
    list_filter = ("state",)
    search_fields = ("llm__name",)
    list_select_related = ("llm", "state")
    fields = ("llm", "state", "n_validation_outcomes", "validation_error", "vector_preview", "created_at", "updated_at")
    readonly_fields = fields

    @admin.display(description="Ψ (profile vector)")
    def vector_preview(self, profile):
        values = ", ".join(f"{v:.3f}" for v in profile.vector[:20])
        return f"[{values}{', …' if len(profile.vector) > 20 else ''}] ({len(profile.vector)} values)"
