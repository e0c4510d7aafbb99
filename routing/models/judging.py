"""Judge verdicts: the cache of LLM-as-judge calls (routing/profiling/judges.py), and their record."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from registry.constraints import valid_choice
from registry.models import LLM
from routing.profiling.judges import Label, Mode

JudgeMode = models.TextChoices("JudgeMode", [(m.value, m.value) for m in Mode])
JudgeLabel = models.TextChoices("JudgeLabel", [(label.value, label.value) for label in Label])


class JudgeVerdict(models.Model):
    """One judge call and its parsed verdict, keyed by (judge, mode, template, prompt, answer, other):
    asked once, read from here afterwards at no cost."""

    Mode = JudgeMode
    Label = JudgeLabel

    key = models.CharField(max_length=64, unique=True, help_text="SHA-256 of what the judge was asked.")
    judge = models.ForeignKey(LLM, on_delete=models.CASCADE, related_name="judge_verdicts")
    mode = models.CharField(max_length=20, choices=JudgeMode.choices)
    label = models.CharField(max_length=20, choices=JudgeLabel.choices)
    score = models.FloatField(null=True, blank=True, help_text="In [0, 1]; empty when the judge gave no verdict.")
    cost_usd = models.FloatField(default=0.0)
    raw_text = models.TextField(blank=True, help_text="The judge's reply (truncated).")
    prompt_excerpt = models.CharField(max_length=200, blank=True)
    # Whose answer was judged, when known: a profiling job's judge spend is counted per graded LLM.
    graded_llm = models.ForeignKey(
        LLM, on_delete=models.SET_NULL, null=True, blank=True, related_name="judged_verdicts"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                name="%(app_label)s_%(class)s_score_in_unit_interval_or_no_verdict",
                condition=(Q(score__isnull=True) & Q(label__in=["refused", "unparseable"]))
                | (Q(score__gte=0) & Q(score__lte=1) & ~Q(label__in=["refused", "unparseable"])),
            ),
            models.CheckConstraint(name="%(app_label)s_%(class)s_cost_not_negative", condition=Q(cost_usd__gte=0)),
            valid_choice("mode", JudgeMode),
            valid_choice("label", JudgeLabel),
        ]
        indexes = [models.Index(fields=["graded_llm", "created_at"], name="routing_judgeverdict_graded")]

    def __str__(self) -> str:
        return f"{self.judge} {self.mode}: {self.label}"
