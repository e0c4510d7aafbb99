"""Admin for judge verdicts: the cached LLM-as-judge calls, read-only (written by the judging service)."""

from django.contrib import admin

from routing.admin.base import ReadOnlyAdmin
from routing.models import JudgeVerdict


@admin.register(JudgeVerdict)
class JudgeVerdictAdmin(ReadOnlyAdmin):
    # Deleting a row only makes the judge be asked again.
    deletable = True
    list_display = ("created_at", "judge", "mode", "label", "score_shown", "cost_shown", "graded_llm", "prompt_excerpt")
    list_filter = ("mode", "label", "judge")
    search_fields = ("judge__name", "graded_llm__name", "prompt_excerpt", "raw_text")
    list_select_related = ("judge", "graded_llm")
    date_hierarchy = "created_at"
    fields = (
        "judge",
        "mode",
        "label",
        "score",
        "cost_usd",
        "graded_llm",
        "prompt_excerpt",
        "raw_text",
        "key",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="score", ordering="score")
    def score_shown(self, verdict):
        return "no verdict" if verdict.score is None else f"{verdict.score:.2f}"

    @admin.display(description="cost (USD)", ordering="cost_usd")
    def cost_shown(self, verdict):
        return f"{verdict.cost_usd:.6f}"
