"""K-NN baseline: γ(x, h) = h's mean error on the k validation prompts nearest to x (METHODS.md)."""

from __future__ import annotations

import numpy as np

from routing.strategies.base import RoutingStrategy
from routing.strategies.profiles import overall_error


class KNearestNeighbours(RoutingStrategy):
    """Cosine k-NN over the validation prompts.

    Ψ(h) is h's whole validation-error vector (one entry per validation prompt, in the order given to
    ``fit``; a missing answer is filled with h's mean error), so profiling needs no neighbour search.
    The neighbours depend only on the prompt, so a live path may find them elsewhere (pgvector HNSW
    over the same validation prompts) and call :meth:`loss_from_neighbours`. It takes no weighted rows
    (``takes_sample_weight``): feedback evidence does not reach a k-NN router.
    """

    name = "knn"
    # Ψ is one entry per validation prompt, so there is no row to append evidence to.
    takes_sample_weight = False
    learned_attributes = ("validation_embeddings_",)
    size_parameter = "k"
    post_fit_params = ("k",)
    fit_uses_outcomes = False

    def __init__(self, k: int = 100):
        self.k = k

    def _fit(self, train_embeddings, train_errors, validation_embeddings, validation_errors, llm_keys):
        if int(self.k) < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        self.validation_embeddings_ = np.ascontiguousarray(validation_embeddings, dtype=np.float32)

    def _profile(self, validation_embeddings, validation_errors, llm_key, sample_weight=None):
        if len(validation_errors) != len(self.validation_embeddings_):
            raise ValueError(
                f"k-NN profiles need the {len(self.validation_embeddings_)} validation prompts it was fitted with, "
                f"got {len(validation_errors)}"
            )
        return np.where(np.isnan(validation_errors), overall_error(validation_errors), validation_errors)

    def _evidence(self, validation_embeddings, answered_weights):
        return answered_weights  # one cell per validation prompt, in Ψ's order

    def _evidence_at(self, prompt_embeddings, evidence):
        # The answered weight among the neighbours the loss is the mean over.
        return evidence[:, self.neighbours(prompt_embeddings)].sum(axis=2).T

    def neighbours(self, prompt_embeddings: np.ndarray) -> np.ndarray:
        """Indices [n_prompts, k] of the most cosine-similar validation prompts (in no particular order)."""
        self._check_fitted()
        similarity = np.asarray(prompt_embeddings, dtype=np.float32) @ self.validation_embeddings_.T
        k = min(int(self.k), similarity.shape[1])
        if k == similarity.shape[1]:
            return np.broadcast_to(np.arange(k), (len(similarity), k))
        return np.argpartition(-similarity, k - 1, axis=1)[:, :k]

    def live_neighbour_count(self) -> int:
        return min(int(self.k), len(self.validation_embeddings_))

    @staticmethod
    def loss_from_neighbours(neighbour_idx: np.ndarray, profiles: np.ndarray) -> np.ndarray:
        """Mean error [n_prompts, n_llms] of each LLM over each prompt's neighbours [n_prompts, k]."""
        neighbour_idx = np.atleast_2d(neighbour_idx)
        return np.asarray(profiles)[:, neighbour_idx].mean(axis=2).T

    def _predict_loss(self, prompt_embeddings, profiles):
        return self.loss_from_neighbours(self.neighbours(prompt_embeddings), profiles)
