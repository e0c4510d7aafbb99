"""Evidence observed after a fit (trusted feedback, graders' verdicts), and the audit of its use.

An :class:`Evidence` row says that an LLM scored ``score`` on a prompt according to a source (and a
tenant). It lives outside routing states: every profile of the LLM, on the active state or a later
one, is computed from its validation answers plus these rows, under the bounded rule of
``routing/strategies/evidence.py``. Each such profile writes an :class:`EvidenceApplication`.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from registry.models import LLM, Prompt
from routing.models.decisions import Decision
from routing.models.state import RoutingState
from routing.models.tenancy import Tenant


class Evidence(models.Model):
    """One judgement of one LLM's answer to one prompt. A source judges a prompt once per LLM: a later
    judgement of the same (source, tenant, LLM, prompt) replaces the earlier one."""

    llm = models.ForeignKey(LLM, on_delete=models.CASCADE, related_name="evidence")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="evidence")
    source = models.CharField(
        max_length=100, help_text='Who judged: "feedback" (a trusted tenant\'s quality score), "judge:<name>", …'
    )
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="evidence", help_text="Whose word it is."
    )
    decision = models.ForeignKey(
        Decision, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    score = models.FloatField(help_text="Correctness in [0, 1].")
    observed_at = models.DateTimeField(help_text="When it was judged; its weight halves every half-life from then.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-observed_at"]
        verbose_name_plural = "evidence"
        constraints = [
            models.UniqueConstraint(
                fields=["source", "tenant", "llm", "prompt"],
                nulls_distinct=False,
                name="%(app_label)s_%(class)s_one_per_source_prompt",
            ),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_score_in_unit_interval", condition=Q(score__gte=0) & Q(score__lte=1)
            ),
        ]
        indexes = [models.Index(fields=["llm", "updated_at"], name="routing_evidence_llm_time")]

    def __str__(self) -> str:
        return (
            f"{self.llm} on {self.prompt_id}: {self.score:g} ({self.source}{f', {self.tenant}' if self.tenant else ''})"
        )


class EvidenceApplicationReason(models.TextChoices):
    EVIDENCE = "evidence", "new evidence"
    PROFILE = "profile", "profiled (a profiling job or a refit)"


class EvidenceApplication(models.Model):
    """One profile of one LLM computed with evidence rows: what it used and how its estimate moved."""

    Reason = EvidenceApplicationReason
    state = models.ForeignKey(RoutingState, on_delete=models.CASCADE, related_name="evidence_applications")
    llm = models.ForeignKey(LLM, on_delete=models.CASCADE, related_name="evidence_applications")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    events = models.PositiveIntegerField(help_text="Evidence rows applied (after one-per-prompt).")
    weight = models.FloatField(help_text="Their total weight after decay and the per-source cap, in prompts.")
    sources = models.JSONField(
        default=list, blank=True, help_text="Per source and tenant: events, weight, and whether the cap scaled it."
    )
    error_before = models.FloatField(
        null=True, blank=True, help_text="The LLM's mean predicted error on the evidence prompts before this profile."
    )
    error_after = models.FloatField(null=True, blank=True, help_text="The same, with this profile.")
    largest_change = models.FloatField(
        default=0.0, help_text="The largest change of a profile entry (a cluster's estimated error)."
    )
    moved = models.JSONField(
        default=list,
        blank=True,
        help_text="The newest events: prompt, cluster, source, tenant, score, and the estimate there before → after.",
    )
    # What the application read, so that new or withdrawn evidence is told from evidence already applied.
    evidence_seen = models.PositiveIntegerField(default=0)
    newest_evidence_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "llm", "-created_at"], name="routing_evidenceapp_state_llm")]

    def __str__(self) -> str:
        return f"{self.llm} @ v{self.state.version}: {self.events} events"

    @property
    def source_lines(self) -> list[str]:
        """One line per source and tenant, for the admin and the dashboard: "feedback (acme): 6 events,
        weight 6"."""
        return [_source_line(source) for source in self.sources]


def _source_line(source: dict) -> str:
    who = source["source"] + (f" ({source['tenant']})" if source.get("tenant") else "")
    capped = ", scaled down to the cap" if source.get("capped") else ""
    return f"{who}: {source['events']} events, weight {source['weight']:g}{capped}"
