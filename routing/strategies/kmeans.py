"""UniRoute K-means (METHODS.md, "K-means variant").

K-means on the *training* prompts' embeddings gives K centroids; Φ(x) is the one-hot of x's most
cosine-similar centroid, Ψ_k(h) is h's shrunk mean error on the validation prompts of cluster k
(see ``profiles.py``), and γ(x, h) = Φ(x)ᵀΨ(h) = Ψ_{cluster(x)}(h).
"""

from __future__ import annotations

import numpy as np

from routing.strategies.base import RoutingStrategy
from routing.strategies.centroids import spherical_centroids
from routing.strategies.profiles import nearest_centroid, one_hot, shrunk_cluster_errors
from routing.strategies.smoothing import PerLLMProfiles

__all__ = ["UniRouteKMeans", "spherical_centroids"]


class UniRouteKMeans(PerLLMProfiles, RoutingStrategy):
    """UniRoute with K-means clusters.

    Ψ_k(h) = (Σ_{x∈S_val, cluster k} err(x, h) + a · ē(h)) / (n_k(h) + a), with a = ``prior_strength``
    and ē(h) h's overall validation error: a Beta prior worth ``a`` prompts pulls small clusters
    towards the LLM's average instead of trusting a handful of answers. K and a are chosen per data
    set by ``tuning.py`` unless given. With ``smoothing="per_llm"`` an LLM whose own answers reject a
    (a specialist) is profiled on finer clusters with its own empirical-Bayes strength
    (``smoothing.py``): its profile is Ψ [K] followed by that tail.
    """

    name = "uniroute_kmeans"
    learned_attributes = ("centroids_", *PerLLMProfiles.fine_attributes)
    optional_attributes = PerLLMProfiles.fine_attributes
    size_parameter = "n_clusters"
    post_fit_params = ("prior_strength", "smoothing")
    # K-means sees only the train prompts' embeddings. The tuner therefore fits once on every training
    # LLM, so a held-out fold's LLMs help set the smoothing threshold and keep the tuned strength: a is
    # tuned for LLMs like the training ones, whom the per-LLM choice leaves on it.
    fit_uses_outcomes = False

    def __init__(
        self,
        n_clusters: int = 10,
        prior_strength: float = 5.0,
        smoothing: str = "per_llm",
        n_init: int = 3,
        random_state: int | None = 0,
    ):
        self.n_clusters = n_clusters
        self.prior_strength = prior_strength
        self.smoothing = smoothing
        self.n_init = n_init
        self.random_state = random_state

    def _fit(self, train_embeddings, train_errors, validation_embeddings, validation_errors, llm_keys):
        if not isinstance(self.n_clusters, (int, np.integer)) or self.n_clusters < 1:
            raise ValueError(f"n_clusters must be a positive int, got {self.n_clusters!r}")
        self.centroids_ = spherical_centroids(
            train_embeddings, self.n_clusters, n_init=self.n_init, random_state=self.random_state
        )
        self._fit_fine_maps(train_embeddings, validation_embeddings, validation_errors, len(self.centroids_))

    def _own_memberships(self, embeddings):
        return one_hot(nearest_centroid(embeddings, self.centroids_), len(self.centroids_))

    def _own_psi(self, validation_embeddings, validation_errors, weights=None):
        return shrunk_cluster_errors(
            self._own_memberships(validation_embeddings), validation_errors, self.prior_strength, weights=weights
        )

    def _own_width(self):
        return len(self.centroids_)

    def _base_clusters(self):
        return len(self.centroids_)

    def _own_losses(self, prompt_embeddings, profiles):
        return profiles[:, nearest_centroid(prompt_embeddings, self.centroids_)].T

    def cluster_of(self, prompt_embeddings):
        self._check_fitted()
        return nearest_centroid(np.atleast_2d(np.asarray(prompt_embeddings, dtype=np.float32)), self.centroids_)

    def centroids(self) -> np.ndarray:
        self._check_fitted()
        return self.centroids_
