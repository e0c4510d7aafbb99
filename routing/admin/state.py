"""Admin for routing states and LLM profiles: refit or activate a state through services."""

from django.contrib import admin, messages
from django.db.models import Count
from django.utils.html import format_html, format_html_join

from routing.admin.base import ReadOnlyAdmin
from routing.models import LLMProfile, RoutingState, StateCentroid
from routing.services import jobs
from routing.services import state as state_services


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
    deletable = True
    list_display = (
        "version",
        "strategy",
        "prompt_set",
        "active",
        "revision",
        "profile_count",
        "n_train_prompts",
        "n_validation_prompts",
        "fit_seconds",
        "created_at",
        "activated_at",
    )
    list_filter = ("is_active", "strategy", "prompt_set")
    list_select_related = ("prompt_set",)
    actions = ("refit", "activate")
    inlines = (LLMProfileInline,)
    fields = (
        "version",
        "strategy",
        "is_active",
        "revision",
        "prompt_set",
        "params",
        "tuning_report",
        "state",
        "embedder",
        "n_train_prompts",
        "n_validation_prompts",
        "centroid_count",
        "fit_seconds",
        "created_at",
        "activated_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_profiles=Count("profiles", distinct=True))

    def has_delete_permission(self, request, obj=None):
        # deleting the active state would stop routing
        return super().has_delete_permission(request, obj) and (obj is None or not obj.is_active)

    @admin.display(description="active", boolean=True, ordering="is_active")
    def active(self, state):
        return state.is_active

    @admin.display(description="profiles", ordering="_profiles")
    def profile_count(self, state):
        return state._profiles

    @admin.display(description="hyper-parameter tuning")
    def tuning_report(self, state):
        tuning = state_services.tuning_of(state)
        if not tuning:
            return "not tuned: fitted with the hyper-parameters as given"
        if tuning.get("score") is None:
            return f"{tuning.get('note')}; held fixed: {tuning.get('fixed') or 'nothing'}"
        best = sorted(tuning["candidates"], key=lambda c: -c["score"])[:5]
        rows = format_html_join("", "<tr><td>{}</td><td>{:.4f}</td></tr>", ((c["params"], c["score"]) for c in best))
        return format_html(
            "chosen {} (held fixed: {}) in {:.1f} s — {} candidates × {} folds of training LLMs, {} prompts to fit on, "
            "{} to score on; criterion: {}<table><tr><th>best candidates</th><th>score</th></tr>{}</table>",
            tuning["chosen"],
            tuning["fixed"] or "nothing",
            tuning["seconds"],
            len(tuning["candidates"]),
            tuning["folds"],
            tuning["fit_prompts"],
            tuning["score_prompts"],
            tuning["criterion"],
            rows,
        )

    @admin.display(description="K-means centroids")
    def centroid_count(self, state):
        return StateCentroid.objects.filter(state=state).count() or "—"

    # The admin shows states read-only (has_change_permission is False for everyone), so the actions
    # check the Django permissions themselves.
    def has_refit_permission(self, request):
        return request.user.has_perms(["routing.add_job", "routing.add_routingstate"])

    def has_activate_permission(self, request):
        return request.user.has_perm("routing.change_routingstate")

    @admin.action(
        description="Refit routing state (same data and strategy, hyper-parameters tuned again; activates when done)",
        permissions=["refit"],
    )
    def refit(self, request, queryset):
        for state in queryset:
            # Tuned states are tuned again (holding fixed what their fit held fixed).
            job, created = jobs.routing_state_refit_enqueue(
                prompt_set_id=state.prompt_set_id, strategy=state.strategy, params=state_services.fixed_params_of(state)
            )
            note = "queued" if created else "a refit is already queued or running"
            self.message_user(
                request, format_html("Refit of v{}: job #{} {}.", state.version, job.id, note), messages.SUCCESS
            )

    @admin.action(
        description="Activate the selected state (all processes switch within a second)", permissions=["activate"]
    )
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one routing state to activate.", messages.ERROR)
            return
        state = queryset.get()
        state_services.routing_state_activate(state=state)
        self.message_user(request, f"Routing state v{state.version} is active.", messages.SUCCESS)


@admin.register(LLMProfile)
class LLMProfileAdmin(ReadOnlyAdmin):
    deletable = True
    list_display = ("llm", "state", "n_validation_outcomes", "validation_error", "smoothing_choice", "updated_at")
    list_filter = ("state",)
    search_fields = ("llm__name",)
    list_select_related = ("llm", "state")
    fields = (
        "llm",
        "state",
        "n_validation_outcomes",
        "validation_error",
        "smoothing_choice",
        "smoothing",
        "vector_preview",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="smoothing")
    def smoothing_choice(self, profile):
        return profile.smoothing_summary

    @admin.display(description="Ψ (profile vector)")
    def vector_preview(self, profile):
        values = ", ".join(f"{v:.3f}" for v in profile.vector[:20])
        return f"[{values}{', …' if len(profile.vector) > 20 else ''}] ({len(profile.vector)} values)"
