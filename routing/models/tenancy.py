"""Tenants, their API keys and the users who may see their dashboard pages."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from registry.constraints import valid_choice
from registry.models import LLM
from routing.selection import MAX_LAMBDA


class TenantPeriod(models.TextChoices):
    DAY = "day", "day (UTC)"
    WEEK = "week", "week (UTC, from Monday)"
    MONTH = "month", "month (UTC)"


class TenantWhenSpent(models.TextChoices):
    REJECT = "reject", "reject (HTTP 402)"
    CHEAPEST = "cheapest", "route to the cheapest allowed LLM"


class Tenant(models.Model):
    Period = TenantPeriod
    WhenSpent = TenantWhenSpent
    name = models.CharField(max_length=100, unique=True)
    budget_usd = models.DecimalField(
        max_digits=14, decimal_places=6, validators=[MinValueValidator(0)], help_text="Spend limit per period, USD."
    )
    budget_period = models.CharField(max_length=10, choices=Period.choices, default=Period.MONTH)
    when_budget_spent = models.CharField(max_length=10, choices=WhenSpent.choices, default=WhenSpent.REJECT)
    allowed_llms = models.ManyToManyField(LLM, blank=True, related_name="tenants", help_text="Empty: every active LLM.")
    default_lambda = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(MAX_LAMBDA)],
        help_text=f"Cost weight λ (0 to {MAX_LAMBDA:g}) when a request gives none; empty: budget pacing.",
    )
    default_quality_target = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(1)]
    )
    default_max_cost_usd = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)], help_text="Per-request cost cap."
    )
    log_gateway_text = models.BooleanField(
        default=False,
        verbose_name="log gateway text",
        help_text="Keep the request and response text of its gateway calls (for learning from real traffic). "
        "Tokens, latency, cost and status are always kept.",
    )
    exploration_share = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Share of its routed requests (0 to 1) that may go to an LLM whose estimate is uncertain "
        "(Thompson sampling among the request's own candidates, within its cost cap and budget); 0: never. "
        "At most ROUTERHUB_EXPLORATION_MAX_SHARE applies. Set by staff only.",
    )
    trusted_for_learning = models.BooleanField(
        default=False,
        help_text="Its quality feedback teaches the router: each score becomes evidence for the LLM that answered "
        "(bounded per tenant, decaying with age; docs/routing-and-evaluation.md). Set by staff holding the "
        "permission to trust tenants.",
    )
    shadow_share = models.FloatField(
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        verbose_name="shadow share",
        help_text="Share of its answered gateway calls (0 to 1) also answered by a comparison LLM and judged "
        "against it, paid from the shadow budget (never the tenant's). 0: none.",
    )
    shadow_comparison_llm = models.ForeignKey(
        LLM,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="shadow comparison LLM",
        help_text="What routed answers are compared with. Empty: the allowed LLM of best predicted quality "
        "for each prompt.",
    )
    shadow_judge_llm = models.ForeignKey(
        LLM,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="shadow judge LLM",
        help_text="The judge comparing the two answers. Empty: ROUTERHUB_JUDGE_LLM.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("trust_tenant_for_learning", "Can mark a tenant trusted for learning")]
        constraints = [
            models.CheckConstraint(name="%(app_label)s_%(class)s_budget_non_negative", condition=Q(budget_usd__gte=0)),
            valid_choice("budget_period", TenantPeriod),
            valid_choice("when_budget_spent", TenantWhenSpent),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_exploration_share_in_unit_interval",
                condition=Q(exploration_share__gte=0) & Q(exploration_share__lte=1),
            ),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_shadow_share_in_unit_interval",
                condition=Q(shadow_share__gte=0) & Q(shadow_share__lte=1),
            ),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_quality_target_in_unit_interval",
                condition=Q(default_quality_target__isnull=True)
                | (Q(default_quality_target__gte=0) & Q(default_quality_target__lte=1)),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self):
        super().clean()
        most = settings.ROUTERHUB_EXPLORATION_MAX_SHARE
        if self.exploration_share is not None and self.exploration_share > most:
            raise ValidationError(
                {
                    "exploration_share": f"At most {most:g} (ROUTERHUB_EXPLORATION_MAX_SHARE): a larger share would "
                    f"route as {most:g} does."
                }
            )


class ApiKey(models.Model):
    """A tenant's API key. Only a SHA-256 hash is stored; the key is shown once, at creation."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True, help_text="First characters of the key, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant", "-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.tenant})"


class TenantMembership(models.Model):
    """Links a Django user to the one tenant whose dashboard pages they may see (staff see every tenant)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_membership")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "user"]
        verbose_name = "tenant user"

    def __str__(self) -> str:
        return f"{self.user} → {self.tenant}"
