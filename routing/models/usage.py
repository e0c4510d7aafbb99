"""Daily roll-ups of decisions and refused requests: what the dashboard's charts read.

Aggregating a million decisions on every page view is too slow, so an hourly beat task
(``routing.rollup_usage``, ``routing/services/usage.py``) writes one ``UsageDay`` row per day,
tenant and LLM — for closed UTC days, and for today up to the last full hour — and records in
``UsageRollup`` how far each day is summed. Readers take the sums from here and aggregate only the
rest (the current hour, and any day not rolled up yet) from the decisions table. Refused requests
(HTTP 402) leave no decision, so they are counted per day as they happen.
"""

from __future__ import annotations

from django.db import models

from registry.models import LLM
from routing.models.tenancy import Tenant


class UsageDay(models.Model):
    day = models.DateField()
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_days")
    llm = models.ForeignKey(LLM, on_delete=models.CASCADE, related_name="usage_days")
    requests = models.PositiveIntegerField()
    spent_usd = models.DecimalField(
        max_digits=20, decimal_places=10, help_text="Reservations (actual costs after feedback) plus overage."
    )
    predicted_quality_sum = models.FloatField(help_text="Sum of the decisions' predicted quality.")
    fallbacks = models.PositiveIntegerField(help_text="Requests routed to the cheapest LLM after the budget ran out.")

    class Meta:
        ordering = ["-day", "tenant", "llm"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "tenant", "llm"], name="%(app_label)s_%(class)s_unique_day_tenant_llm"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.tenant} {self.llm}: {self.requests} requests"


class UsageRollup(models.Model):
    """A UTC day whose decisions up to ``through`` are summed in ``UsageDay`` (a day without decisions
    has no rows there); ``through`` is the day's end once the day is closed."""

    day = models.DateField(unique=True)
    through = models.DateTimeField()
    rolled_at = models.DateTimeField()

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"{self.day} (rolled up {self.rolled_at:%Y-%m-%d %H:%M})"


class RejectionDay(models.Model):
    """Route requests refused with 402 (budget spent), per tenant and UTC day, counted as they happen."""

    day = models.DateField()
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="rejection_days")
    rejected = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-day", "tenant"]
        constraints = [
            models.UniqueConstraint(fields=["day", "tenant"], name="%(app_label)s_%(class)s_unique_day_tenant")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.tenant}: {self.rejected} refused"
