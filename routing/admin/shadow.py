"""Admin for shadow evaluation: the shadow budgets staff set, and the evaluations (read-only)."""

from django.contrib import admin

from routing.admin.base import ReadOnlyAdmin
from routing.models import ShadowBudget, ShadowEvaluation


@admin.register(ShadowBudget)
class ShadowBudgetAdmin(admin.ModelAdmin):
    """Staff set the limit; only shadow evaluations change what is spent."""

    list_display = ("__str__", "limit_usd", "spent_usd", "left_usd", "updated_at")
    list_select_related = ("tenant",)
    fields = ("tenant", "limit_usd", "spent_usd", "created_at", "updated_at")
    readonly_fields = ("spent_usd", "created_at", "updated_at")

    @admin.display(description="left (USD)")
    def left_usd(self, budget):
        return budget.left_usd

    def has_delete_permission(self, request, obj=None):
        # Its evaluations point at it (PROTECT): a budget that paid for any stays, lowered to stop it.
        return super().has_delete_permission(request, obj) and (obj is None or not obj.evaluations.exists())


@admin.register(ShadowEvaluation)
class ShadowEvaluationAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "tenant",
        "status",
        "verdict",
        "score",
        "routed_llm",
        "comparison_llm",
        "routed_cost_usd",
        "comparison_cost_usd",
        "judge_cost_usd",
    )
    list_filter = ("status", "verdict", "tenant")
    list_select_related = ("tenant", "routed_llm", "comparison_llm")
    date_hierarchy = "created_at"
    fields = (
        "decision",
        "tenant",
        "created_at",
        "status",
        "verdict",
        "score",
        "judge_detail",
        "error",
        "routed_llm",
        "comparison_llm",
        "judge_llm",
        "budget",
        "reserved_usd",
        "routed_cost_usd",
        "comparison_cost_usd",
        "judge_cost_usd",
        "request",
        "routed_text",
        "comparison_text",
        "sent_at",
        "claimed_at",
        "comparison_started_at",
        "finished_at",
    )
    readonly_fields = fields
