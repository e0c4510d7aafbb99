"""Admin for routing decisions (read-only records of the route API)."""

from django.contrib import admin

from routing.admin.base import ReadOnlyAdmin
from routing.models import Decision, DecisionFeedback
from routing.views import formatting


class DecisionFeedbackInline(admin.TabularInline):
    """Every feedback the decision received, as sent (read-only: the record of what the tenant said)."""

    model = DecisionFeedback
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "received_at",
        "actual_cost_usd",
        "input_tokens",
        "output_tokens",
        "latency_ms",
        "quality_score",
        "counted_usd",
        "api_key",
    )

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    # Short headers and rounded figures: the list fits a 1,400 px screen with its filters.
    list_display = (
        "when",
        "tenant",
        "source",
        "call_status",
        "llm",
        "why_lambda",
        "lambda_",
        "predicted",
        "estimated",
        "score",
        "reported",
    )
    list_filter = (
        "tenant",
        "source",
        "call_status",
        "llm",
        "lambda_reason",
        "strategy",
        "explored",
        ("feedback_at", admin.EmptyFieldListFilter),
    )
    search_fields = ("id", "routed_text")
    date_hierarchy = "created_at"
    list_select_related = ("tenant", "llm")
    show_full_result_count = False  # counting a large decisions table on every page is slow
    inlines = (DecisionFeedbackInline,)

    @admin.display(description="when (UTC)", ordering="created_at")
    def when(self, decision):
        return f"{decision.created_at:%Y-%m-%d %H:%M:%S}"

    @admin.display(description="why λ", ordering="lambda_reason")
    def why_lambda(self, decision):
        return SHORT_REASONS.get(decision.lambda_reason, decision.lambda_reason)

    @admin.display(description="λ", ordering="lambda_used")
    def lambda_(self, decision):
        return formatting.lam(decision.lambda_used)

    @admin.display(description="predicted quality", ordering="predicted_quality")
    def predicted(self, decision):
        return formatting.quality(decision.predicted_quality)

    @admin.display(description="estimated", ordering="estimated_cost_usd")
    def estimated(self, decision):
        return formatting.usd(decision.estimated_cost_usd)

    @admin.display(description="quality score", ordering="quality_score")
    def score(self, decision):
        return formatting.quality(decision.quality_score)

    @admin.display(description="reported cost", ordering="reported_cost_usd")
    def reported(self, decision):
        return formatting.usd(decision.reported_cost_usd)


SHORT_REASONS = {
    Decision.LambdaReason.EXPLICIT: "request",
    Decision.LambdaReason.TENANT_DEFAULT: "tenant default",
    Decision.LambdaReason.QUALITY_TARGET: "quality target",
    Decision.LambdaReason.BUDGET_PACING: "pacing",
    Decision.LambdaReason.BUDGET_EXHAUSTED: "budget spent",
}
