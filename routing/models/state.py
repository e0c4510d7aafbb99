"""Fitted routers: a routing state is one fitted strategy plus the profiles of the LLMs it routes to."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from pgvector.django import VectorField

from registry.models import EMBEDDING_DIMENSIONS, LLM, PromptSet


class RoutingState(models.Model):
    """One fitted strategy. Exactly one state is active; web and worker processes route with it.

    ``arrays`` holds the strategy's learned numpy arrays (an ``.npz`` blob: θ, predictor weights,
    validation embeddings for K-NN); K-means centroids are also stored as pgvector rows
    (``StateCentroid``) so they can be inspected and queried in SQL. ``revision`` increases each time
    a profile is added or changed, so processes know when to reload without polling every row.
    """

    strategy = models.CharField(max_length=50)
    version = models.PositiveIntegerField(unique=True)
    params = models.JSONField(default=dict, blank=True, help_text="Hyper-parameters the strategy was built with.")
    state = models.JSONField(default=dict, blank=True, help_text="The strategy's small JSON state (no arrays).")
    arrays = models.BinaryField(help_text="The strategy's learned arrays, as an .npz blob.")
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.PROTECT, related_name="routing_states")
    train_llms = models.ManyToManyField(LLM, related_name="trained_states", blank=True)
    # Profiles computed on another set's prompts than ``prompt_set``'s validation split (a validation set
    # built from a tenant's traffic, graded by a judge); empty: that split.
    validation_set = models.ForeignKey(
        PromptSet,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="validated_states",
        help_text="The prompt set the LLMs were profiled on, when not the data set's own validation split.",
    )
    embedder = models.CharField(max_length=100)
    # The validation prompts, in the order the profiles' per-prompt entries (K-NN) refer to them.
    validation_prompt_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    n_train_prompts = models.PositiveIntegerField(default=0)
    n_validation_prompts = models.PositiveIntegerField(default=0)
    fit_seconds = models.FloatField(default=0)
    is_active = models.BooleanField(default=False)
    revision = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="%(app_label)s_%(class)s_unique_active"
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.version} {self.strategy}{' (active)' if self.is_active else ''}"


class StateCentroid(models.Model):
    state = models.ForeignKey(RoutingState, on_delete=models.CASCADE, related_name="centroids")
    index = models.PositiveIntegerField()
    vector = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    n_train_prompts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["state", "index"]
        constraints = [models.UniqueConstraint(fields=["state", "index"], name="%(app_label)s_%(class)s_unique_index")]

    def __str__(self) -> str:
        return f"{self.state} cluster {self.index}"


class LLMProfile(models.Model):
    """Ψ(h): an LLM's feature vector under one routing state, computed from validation outcomes only."""

    state = models.ForeignKey(RoutingState, on_delete=models.CASCADE, related_name="profiles")
    llm = models.ForeignKey(LLM, on_delete=models.CASCADE, related_name="profiles")
    vector = ArrayField(models.FloatField())
    n_validation_outcomes = models.PositiveIntegerField()
    validation_error = models.FloatField(help_text="Mean error on the validation prompts it answered.")
    smoothing = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the strategy chose for this LLM alone (routing/strategies/smoothing.py): the prior "
        "strength and clusters its profile uses, and whether its answers departed from the tuned prior. "
        "Empty for strategies that profile every LLM alike.",
    )
    evidence = ArrayField(
        models.FloatField(),
        default=list,
        blank=True,
        help_text="The answered weight behind the profile in each of the strategy's cells "
        "(RoutingStrategy.evidence): how sure its estimates are, which exploration reads. Empty: not "
        "recorded, and the LLM is never explored.",
    )
    error_evidence = ArrayField(
        models.FloatField(),
        default=list,
        blank=True,
        help_text="The weighted error count behind each entry of evidence (RoutingStrategy.error_evidence): "
        "exploration draws from the LLM's own error rate near a prompt. Empty: not recorded, and its draws "
        "are centred on the profile's estimate.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["state", "llm"]
        constraints = [
            models.UniqueConstraint(fields=["state", "llm"], name="%(app_label)s_%(class)s_unique_state_llm")
        ]

    def __str__(self) -> str:
        return f"{self.llm} @ {self.state}"

    @property
    def smoothing_summary(self) -> str:
        """One line on how this profile was smoothed, for the admin and the dashboard."""
        return smoothing_summary(self.smoothing)


def smoothing_summary(smoothing: dict) -> str:
    if not smoothing:
        return "as every LLM (this strategy makes no per-LLM choice)"
    strength, clusters = smoothing.get("prior_strength"), smoothing.get("clusters")
    departure, threshold = smoothing.get("departure"), smoothing.get("threshold")
    if smoothing.get("departs"):
        return (
            f"its own: prior strength {strength:g} on {clusters} clusters — its answers depart from the tuned "
            f"prior ({smoothing.get('tuned_prior_strength'):g}) by a log-likelihood ratio of {departure:.1f}, "
            f"above the {threshold:.1f} the training LLMs allow"
        )
    if threshold is None:
        return f"as the training LLMs: tuned prior strength {strength:g} on {clusters} clusters"
    if departure > threshold:
        return (
            f"as the training LLMs: tuned prior strength {strength:g} on {clusters} clusters — its answers depart "
            f"from the tuned prior by a log-likelihood ratio of {departure:.1f}, above the {threshold:.1f} the "
            "training LLMs allow, but finer clusters explain them no better"
        )
    return (
        f"as the training LLMs: tuned prior strength {strength:g} on {clusters} clusters "
        f"(log-likelihood ratio {departure:.1f}, within the {threshold:.1f} the training LLMs allow)"
    )
