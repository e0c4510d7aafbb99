"""Every feedback a decision received, as it was sent: the decision holds only the latest values."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from routing.models.decisions import Decision
from routing.models.tenancy import ApiKey


class DecisionFeedback(models.Model):
    """One feedback on one decision. A later feedback that changes a quality score or a cost does not
    erase this one: what a tenant reported, and when, stays on record."""

    decision = models.ForeignKey(Decision, on_delete=models.CASCADE, related_name="feedback_history")
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    received_at = models.DateTimeField(auto_now_add=True)
    # The fields as given (null: not in this feedback).
    actual_cost_usd = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    input_tokens = models.PositiveIntegerField(null=True, blank=True)
    output_tokens = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    quality_score = models.FloatField(null=True, blank=True)
    # What the decision counted in its budget once this feedback was applied.
    counted_usd = models.DecimalField(max_digits=20, decimal_places=10)

    class Meta:
        ordering = ["decision", "received_at", "id"]
        verbose_name_plural = "decision feedback"
        constraints = [
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_quality_score_in_unit_interval",
                condition=Q(quality_score__isnull=True) | (Q(quality_score__gte=0) & Q(quality_score__lte=1)),
            ),
        ]

    def __str__(self) -> str:
        return f"feedback on {self.decision_id} at {self.received_at:%Y-%m-%d %H:%M:%S}"
