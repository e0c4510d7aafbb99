"""The gateway's own records: per-tenant routing presets, and the text of calls of tenants that log it."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from registry.models import LLM
from routing.models.decisions import Decision
from routing.models.tenancy import Tenant

PRESET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$"
AUTO_MODEL = "routerhub-auto"  # the model name that routes; "routerhub-auto:<preset>" uses a preset


class Preset(models.Model):
    """A named set of routing options, used as ``model: "routerhub-auto:<name>"``.

    Options given in the request's ``routerhub`` object win over the preset's, which win over the
    tenant's defaults. Its LLMs narrow the tenant's allowed LLMs (never widen them).
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="presets")
    name = models.CharField(
        max_length=50,
        validators=[RegexValidator(PRESET_NAME_PATTERN, "Letters, digits, '.', '_' or '-', at most 50 characters.")],
        help_text=f'Used as model "{AUTO_MODEL}:<name>", e.g. cheap, balanced, best.',
    )
    description = models.CharField(max_length=200, blank=True)
    lambda_value = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        verbose_name="λ",
        help_text="Cost weight λ in argmin loss + λ·cost (USD); empty: quality target, tenant default or pacing.",
    )
    quality_target = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="Choose the cheapest LLM whose predicted quality reaches this.",
    )
    max_cost_usd = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0)], help_text="Per-request cost cap (USD)."
    )
    allowed_llms = models.ManyToManyField(
        LLM, blank=True, related_name="presets", help_text="Only these LLMs (within the tenant's); empty: all."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="%(app_label)s_%(class)s_unique_tenant_name"),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_name_valid", condition=Q(name__regex=PRESET_NAME_PATTERN)
            ),
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_options_in_range",
                condition=(Q(lambda_value__isnull=True) | Q(lambda_value__gte=0))
                & (Q(quality_target__isnull=True) | (Q(quality_target__gte=0) & Q(quality_target__lte=1)))
                & (Q(max_cost_usd__isnull=True) | Q(max_cost_usd__gte=0)),
            ),
        ]

    def __str__(self) -> str:
        return f"{AUTO_MODEL}:{self.name} ({self.tenant})"

    @property
    def model_name(self) -> str:
        return f"{AUTO_MODEL}:{self.name}"


class GatewayExchange(models.Model):
    """The text of one gateway call, kept only for tenants with ``log_gateway_text`` on (truncated)."""

    decision = models.OneToOneField(Decision, on_delete=models.CASCADE, primary_key=True, related_name="exchange")
    request = models.JSONField(help_text="The request body as sent upstream (messages, options).")
    response_text = models.TextField(blank=True, help_text="The answer's text (streamed chunks joined).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "gateway exchange"

    def __str__(self) -> str:
        return f"exchange of {self.decision_id}"
