"""Admin for routing decisions (read-only records of the route API)."""

from django.contrib import admin

from routing.admin.base import ReadOnlyAdmin
from routing.models import Decision


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
        "actual_cost_usd",
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
