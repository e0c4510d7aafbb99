"""Admin for routing decisions (read-only records of the route API)."""

from django.contrib import admin

from routing.admin.base import ReadOnlyAdmin
from routing.models import Decision, DecisionFeedback


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
    list_display = (
        "created_at",
        "tenant",
        "source",
        "call_status",
        "llm",
        "lambda_reason",
        "lambda_used",
        "predicted_quality",
        "estimated_cost_usd",
        "reserved_usd",
        "quality_score",
        "reported_cost_usd",
    )
    list_filter = (
        "tenant",
        "source",
        "call_status",
        "llm",
        "lambda_reason",
        "strategy",
        ("feedback_at", admin.EmptyFieldListFilter),
    )
    search_fields = ("id", "routed_text")
    date_hierarchy = "created_at"
    list_select_related = ("tenant", "llm")
    show_full_result_count = False  # counting a large decisions table on every page is slow
    inlines = (DecisionFeedbackInline,)
