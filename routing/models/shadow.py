"""Shadow evaluation: a share of a tenant's gateway calls also answered by a comparison LLM, off the
response path, and the two answers compared by a judge (``routing/services/shadow.py``)."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from registry.constraints import valid_choice
from registry.models import LLM
from routing.models.decisions import Decision
from routing.models.tenancy import Tenant


class ShadowBudget(models.Model):
    """Money staff set aside for shadow evaluation — never a tenant's budget. A tenant's own shadow
    budget, when it has one, pays for its shadow calls; the global one (no tenant) for the others'.
    Shadowing a call reserves what its comparison and judge calls can cost at most; when that no
    longer fits under the limit, the call is not shadowed."""

    tenant = models.OneToOneField(
        Tenant,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="shadow_budget",
        help_text="Empty: the global shadow budget, for every tenant without one of its own.",
    )
    limit_usd = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        validators=[MinValueValidator(0)],
        help_text="What shadow calls may spend, USD.",
    )
    spent_usd = models.DecimalField(
        max_digits=20,
        decimal_places=10,
        default=0,
        help_text="Spent and reserved by shadow calls (comparison and judge), USD.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant__name"]
        constraints = [
            # One global budget: NULLs are not distinct here.
            models.UniqueConstraint(
                fields=["tenant"], name="%(app_label)s_%(class)s_one_per_tenant", nulls_distinct=False
            ),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_amounts_non_negative", condition=Q(limit_usd__gte=0) & Q(spent_usd__gte=0)
            ),
        ]

    def __str__(self) -> str:
        return f"shadow budget of {self.tenant}" if self.tenant_id else "global shadow budget"

    @property
    def left_usd(self):
        return max(self.limit_usd - self.spent_usd, 0)


class ShadowStatus(models.TextChoices):
    PENDING = "pending", "waiting for the worker"  # its comparison LLM chosen by the worker, then called
    COMPARED = "compared", "comparison answered, waiting for the judge"
    JUDGED = "judged", "judged"
    NO_BUDGET = "no_budget", "not run: the shadow budget is spent"
    FAILED = "failed", "failed"


class ShadowVerdict(models.TextChoices):
    WIN = "win", "the routed answer is better"
    TIE = "tie", "as good as each other"
    LOSS = "loss", "the comparison's answer is better"
    REFUSED = "refused", "the judge declined to judge"
    UNPARSEABLE = "unparseable", "the judge's verdict could not be read"


class ShadowEvaluation(models.Model):
    """One shadowed gateway call: the routed answer against the comparison LLM's, as the judge saw them.

    The gateway writes it pending with what cannot be had later (the conversation, the routed answer);
    a periodic sweep sends its task, and the worker chooses its comparison LLM, judge and shadow budget, so those are empty until then. The
    texts (``request``, ``routed_text``, ``comparison_text``) are kept while the evaluation runs; once it
    ends they are emptied unless the tenant logs its gateway text."""

    Status = ShadowStatus
    Verdict = ShadowVerdict
    decision = models.OneToOneField(Decision, on_delete=models.CASCADE, primary_key=True, related_name="shadow")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="shadow_evaluations", db_index=False)
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    routed_llm = models.ForeignKey(LLM, on_delete=models.PROTECT, related_name="+")
    comparison_llm = models.ForeignKey(LLM, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    judge_llm = models.ForeignKey(LLM, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    budget = models.ForeignKey(
        ShadowBudget, on_delete=models.PROTECT, related_name="evaluations", null=True, blank=True
    )
    request = models.JSONField(default=dict, blank=True, help_text="The messages and options sent upstream.")
    routed_text = models.TextField(blank=True)
    comparison_text = models.TextField(blank=True)
    # When its task was last sent (empty: not yet): the sweep sends the new ones, and again those still
    # running long after it.
    sent_at = models.DateTimeField(null=True, blank=True)
    # Set by each delivery that takes it: for the task's time limit no other delivery touches it.
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Set, and committed, before the comparison LLM is called: a retry that finds it set never calls again.
    comparison_started_at = models.DateTimeField(null=True, blank=True)
    reserved_usd = models.DecimalField(
        max_digits=20, decimal_places=10, default=0, help_text="Held in the shadow budget until the judge answers."
    )
    routed_cost_usd = models.DecimalField(max_digits=20, decimal_places=10)
    comparison_cost_usd = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    judge_cost_usd = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    verdict = models.CharField(max_length=20, choices=Verdict.choices, blank=True)
    score = models.FloatField(
        null=True, blank=True, help_text="The routed answer's pairwise score: 1 better, 0.5 as good, 0 worse."
    )
    judge_detail = models.JSONField(default=dict, blank=True, help_text="The judge's verdict in each order.")
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="routing_shadow_tenant_time"),
            # The sweep's scan: the few evaluations still running.
            models.Index(
                fields=["sent_at"], name="routing_shadow_running_sent", condition=Q(status__in=["pending", "compared"])
            ),
        ]
        constraints = [
            valid_choice("status", ShadowStatus),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_verdict_valid",
                condition=Q(verdict="") | Q(verdict__in=ShadowVerdict.values),
            ),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_reserved_non_negative", condition=Q(reserved_usd__gte=0)
            ),
        ]

    def __str__(self) -> str:
        return f"shadow of {self.decision_id}"
