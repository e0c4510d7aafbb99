"""Offline benchmark runs and their figures."""

from django.db import models

from registry.models import PromptSet


class EvaluationRun(models.Model):
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="evaluation_runs")
    protocol = models.JSONField(default=dict, help_text="Splits, fractions and what is routed among.")
    strategies = models.JSONField(default=list)
    trials = models.PositiveIntegerField()
    seed = models.IntegerField()
    cost = models.CharField(max_length=20, help_text="Cost measure: price, params or row.")
    embedder = models.CharField(max_length=100)
    results = models.JSONField(default=dict, help_text="The same figures as the --json output.")
    seconds = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prompt_set} × {self.trials} splits ({self.created_at:%Y-%m-%d %H:%M})"
