"""Routing decisions: one row for every accepted route request."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from registry.constraints import valid_choice
from registry.models import LLM, Outcome
from routing.models.budgets import BudgetPeriod
from routing.models.state import RoutingState
from routing.models.tenancy import ApiKey, Tenant


class DecisionLambdaReason(models.TextChoices):
    EXPLICIT = "explicit", "given in the request"
    TENANT_DEFAULT = "tenant_default", "the tenant's default λ"
    QUALITY_TARGET = "quality_target", "cheapest LLM meeting the quality target"
    BUDGET_PACING = "budget_pacing", "paced to the remaining budget"
    BUDGET_EXHAUSTED = "budget_exhausted", "budget spent: cheapest allowed LLM"
    DIRECT = "direct", "the client named the LLM (gateway)"


class DecisionSource(models.TextChoices):
    ROUTE = "route", "POST /api/v1/route (the client calls the LLM)"
    GATEWAY = "gateway", "POST /v1/chat/completions (routerhub called the LLM)"


class DecisionCallStatus(models.TextChoices):
    PENDING = "pending", "calling the LLM"
    OK = "ok", "answered"
    CLIENT_ERROR = "client_error", "the LLM refused the request (4xx, returned to the client)"
    FAILED = "failed", "every attempt failed"
    INTERRUPTED = "interrupted", "the stream broke after its first byte"
    CANCELLED = "cancelled", "the client disconnected"


class Decision(models.Model):
    LambdaReason = DecisionLambdaReason
    Source = DecisionSource
    CallStatus = DecisionCallStatus
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # PROTECT: decisions are the tenant's billing history; a tenant that has routed is deactivated, not deleted.
    # No index of their own: routing_decision_tenant_time and _llm_time lead with them (one write less each).
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="decisions", db_index=False)
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="decisions")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    routed_text = models.TextField(help_text="The text routed on (last user turn plus bounded context).")
    prompt_tokens = models.PositiveIntegerField()
    llm = models.ForeignKey(LLM, on_delete=models.PROTECT, related_name="decisions", db_index=False)
    state = models.ForeignKey(RoutingState, on_delete=models.SET_NULL, null=True, related_name="decisions")
    state_version = models.PositiveIntegerField()
    strategy = models.CharField(max_length=50)
    cluster = models.IntegerField(null=True, blank=True)
    lambda_used = models.FloatField(null=True, blank=True)
    lambda_reason = models.CharField(max_length=20, choices=LambdaReason.choices)
    predicted_quality = models.FloatField(null=True, blank=True, help_text="Empty when the client named the LLM.")
    estimated_cost_usd = models.DecimalField(max_digits=20, decimal_places=10)
    budget_period = models.ForeignKey(BudgetPeriod, on_delete=models.CASCADE, related_name="decisions")
    # What this decision currently counts in its period: reserved_usd in spent_usd (within the
    # limit), overage_usd in overage_usd (routed after the budget ran out). Feedback moves both.
    reserved_usd = models.DecimalField(max_digits=20, decimal_places=10, help_text="Counted against the budget now.")
    overage_usd = models.DecimalField(
        max_digits=20, decimal_places=10, default=0, help_text="Counted as overage (budget already spent)."
    )
    alternatives = models.JSONField(default=list, blank=True)
    # Exploration (the tenant's exploration_share): the choice came from a posterior draw and differs
    # from the one the estimates alone make, which is kept as it was offered (name, quality, cost).
    explored = models.BooleanField(default=False, help_text="Chosen by exploration, not by the estimates alone.")
    exploited = models.JSONField(
        null=True,
        blank=True,
        help_text="When explored: the LLM the estimates alone would have chosen, its predicted quality and cost.",
    )
    request = models.JSONField(default=dict, blank=True, help_text="The request's options (not the prompt).")
    # Filled by feedback (the latest value of each field; every feedback is kept in DecisionFeedback):
    actual_cost_usd = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    reported_cost_usd = models.DecimalField(
        max_digits=20,
        decimal_places=10,
        null=True,
        blank=True,
        help_text="What feedback says the call cost: actual_cost_usd, or the LLM's prices × the reported tokens.",
    )
    quality_score = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    feedback_at = models.DateTimeField(null=True, blank=True)
    outcome = models.ForeignKey(Outcome, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    # Filled by the gateway, which calls the LLM itself (source "gateway"): what it measured.
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.ROUTE)
    call_status = models.CharField(max_length=20, choices=CallStatus.choices, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True, help_text="Time to the first streamed byte.")
    attempts = models.JSONField(
        default=list, blank=True, help_text="Each upstream call: LLM, outcome, HTTP status, latency, error."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant", "created_at"], name="routing_decision_tenant_time"),
            # The dashboard's decision list, newest first, filtered by LLM or by status: without
            # these a rare filter value would walk the whole created_at index to fill one page.
            models.Index(fields=["llm", "created_at"], name="routing_decision_llm_time"),
            models.Index(
                fields=["created_at"], condition=Q(feedback_at__isnull=False), name="routing_decision_feedback_time"
            ),
            models.Index(
                fields=["created_at"],
                condition=Q(lambda_reason="budget_exhausted"),
                name="routing_decision_fallback_time",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_amounts_non_negative",
                condition=Q(reserved_usd__gte=0) & Q(overage_usd__gte=0) & Q(estimated_cost_usd__gte=0),
            ),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_quality_score_in_unit_interval",
                condition=Q(quality_score__isnull=True) | (Q(quality_score__gte=0) & Q(quality_score__lte=1)),
            ),
            valid_choice("lambda_reason", DecisionLambdaReason),
            valid_choice("source", DecisionSource),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_call_status_valid",
                condition=Q(call_status="") | Q(call_status__in=DecisionCallStatus.values),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} → {self.llm}"
