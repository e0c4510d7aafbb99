"""ZeroRouter: every prompt gets each LLM's average validation error (METHODS.md, K-means with K = 1)."""

from __future__ import annotations

import numpy as np

from routing.strategies.base import RoutingStrategy
from routing.strategies.profiles import overall_error


class ZeroRouter(RoutingStrategy):
    """Ψ(h) = [ē(h)], h's mean validation error; γ(x, h) = ē(h) for every x.

    The reference every other strategy must beat: it routes on price and average quality only.
    """

    name = "zero"
    learned_attributes = ("embedding_dim_",)
    fit_uses_outcomes = False

    def __init__(self):
        pass

    def _fit(self, train_embeddings, train_errors, validation_embeddings, validation_errors, llm_keys):
        self.embedding_dim_ = int(train_embeddings.shape[1])

    def _profile(self, validation_embeddings, validation_errors, llm_key, sample_weight=None):
        return np.array([overall_error(validation_errors, sample_weight)])

    def _predict_loss(self, prompt_embeddings, profiles):
        return np.broadcast_to(profiles[:, 0], (len(prompt_embeddings), len(profiles))).copy()
