"""Admin for evidence and its applications: read-only, the audit of what taught the router."""

from django.contrib import admin
from django.utils.html import format_html_join

from routing.admin.base import ReadOnlyAdmin
from routing.models import Evidence, EvidenceApplication


@admin.register(Evidence)
class EvidenceAdmin(ReadOnlyAdmin):
    """Judgements of LLMs' answers (trusted tenants' feedback, graders' verdicts); written by services only."""

    deletable = True  # staff may withdraw a judgement: the next application leaves it out
    list_display = ("llm", "prompt_id", "source", "tenant", "score", "observed_at", "updated_at")
    list_filter = ("source", "tenant", "llm")
    search_fields = ("llm__name", "tenant__name", "source")
    list_select_related = ("llm", "tenant")
    fields = ("llm", "prompt", "source", "tenant", "decision", "score", "observed_at", "created_at", "updated_at")


@admin.register(EvidenceApplication)
class EvidenceApplicationAdmin(ReadOnlyAdmin):
    """Each profile computed with evidence: which LLM, on which state, from whom, and what moved."""

    list_display = (
        "created_at",
        "llm",
        "state",
        "reason",
        "events",
        "weight_shown",
        "estimate",
        "largest_change",
        "from_whom",
    )
    list_filter = ("reason", "llm", "state")
    list_select_related = ("llm", "state")
    fields = (
        "created_at",
        "llm",
        "state",
        "reason",
        "events",
        "weight",
        "error_before",
        "error_after",
        "largest_change",
        "sources_table",
        "moved_table",
        "evidence_seen",
        "newest_evidence_at",
    )
    readonly_fields = fields

    @admin.display(description="weight (prompts)", ordering="weight")
    def weight_shown(self, application):
        return f"{application.weight:.2f}"

    @admin.display(description="mean estimated error on the evidence prompts")
    def estimate(self, application):
        if application.error_before is None:
            return "—"
        return f"{application.error_before:.3f} → {application.error_after:.3f}"

    @admin.display(description="from")
    def from_whom(self, application):
        return "; ".join(application.source_lines) or "—"

    @admin.display(description="sources")
    def sources_table(self, application):
        return format_html_join("", "<div>{}</div>", ((line,) for line in application.source_lines)) or "—"

    @admin.display(description="newest events: estimate at the prompt before → after")
    def moved_table(self, application):
        return (
            format_html_join(
                "",
                "<div>prompt {} (cluster {}): score {} from {} — estimated error {} → {} (weight {})</div>",
                (
                    (
                        row["prompt"],
                        "—" if row["cluster"] is None else row["cluster"],
                        row["score"],
                        row["source"] + (f", {row['tenant']}" if row["tenant"] else ""),
                        row["before"],
                        row["after"],
                        row["weight"],
                    )
                    for row in application.moved
                ),
            )
            or "—"
        )
