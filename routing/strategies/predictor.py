"""Routoo-style performance predictor (METHODS.md, "Routoo": a multi-output predictor over the pool).

One logistic head per *known* training LLM on the shared prompt embedding predicts that LLM's
probability of answering correctly, without calling any LLM. It is not universal: an LLM it was not
trained on has no head, so such an LLM is scored by an embedded universal strategy (UniRoute
K-means by default) and its profile says so.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from routing.strategies.base import RoutingStrategy
from routing.strategies.profiles import EPS, log_loss


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def fit_logistic_heads(embeddings, correctness, l2: float, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights [m, D] and intercepts [m] minimising per-LLM log-loss (fractional targets, NaN skipped) + l2‖W‖²."""
    X = embeddings.astype(np.float64)
    answered = ~np.isnan(correctness)
    targets = np.where(answered, correctness, 0.0)
    n_answered = max(int(answered.sum()), 1)
    m, d = correctness.shape[1], X.shape[1]

    def objective(params):
        weights, intercepts = params[: m * d].reshape(m, d), params[m * d :]
        p = np.clip(_sigmoid(X @ weights.T + intercepts), EPS, 1 - EPS)
        loss = -np.sum(answered * (targets * np.log(p) + (1 - targets) * np.log(1 - p))) / n_answered
        residual = answered * (p - targets) / n_answered
        gradient = np.concatenate([(residual.T @ X + 2 * l2 * weights).ravel(), residual.sum(axis=0)])
        return loss + l2 * np.sum(weights**2), gradient

    result = minimize(objective, np.zeros(m * d + m), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return result.x[: m * d].reshape(m, d).astype(np.float32), result.x[m * d :].astype(np.float32)


class RoutooPredictor(RoutingStrategy):
    """Per-LLM logistic heads for the training LLMs; a universal fallback for every other LLM.

    ``l2`` is picked from ``l2_grid`` by log-loss on the validation prompts, then the heads are
    refitted on train + validation prompts. Profiles are ``[head index, *fallback profile]`` with
    head index −1 for an LLM without a head; :meth:`scores_with_fallback` reads that flag.
    """

    name = "routoo_predictor"
    universal = False
    # fallback_ is a fitted strategy: stored flat under "fallback." (RoutingStrategy.get_state)
    learned_attributes = ("weights_", "intercepts_", "llm_keys_", "l2_", "fallback_")

    def __init__(
        self, l2_grid: tuple[float, ...] = (1e-6, 1e-5, 1e-4), max_iter: int = 300, fallback: str = "uniroute_kmeans"
    ):
        self.l2_grid = l2_grid
        self.max_iter = max_iter
        self.fallback = fallback

    def _fit(self, train_embeddings, train_errors, validation_embeddings, validation_errors, llm_keys):
        if llm_keys is None:
            raise ValueError("routoo_predictor keeps one head per training LLM: fit needs llm_keys")
        if len(set(llm_keys)) != len(llm_keys):
            raise ValueError("llm_keys must be unique")
        train_correctness, validation_correctness = 1.0 - train_errors, 1.0 - validation_errors
        scores = []
        for l2 in self.l2_grid:
            weights, intercepts = fit_logistic_heads(train_embeddings, train_correctness, l2, self.max_iter)
            predicted = _sigmoid(validation_embeddings @ weights.T + intercepts)
            scores.append(log_loss(1.0 - predicted, validation_errors))
        self.l2_ = float(list(self.l2_grid)[int(np.argmin(scores))])
        self.weights_, self.intercepts_ = fit_logistic_heads(
            np.concatenate([train_embeddings, validation_embeddings]),
            np.concatenate([train_correctness, validation_correctness]),
            self.l2_,
            self.max_iter,
        )
        self.llm_keys_ = list(llm_keys)
        from routing.strategies import get_strategy  # the table imports this module

        self.fallback_ = get_strategy(self.fallback).fit(
            train_embeddings,
            train_correctness,
            validation_embeddings=validation_embeddings,
            validation_correctness=validation_correctness,
        )

    def _profile(self, validation_embeddings, validation_errors, llm_key, sample_weight=None):
        # An LLM with a head is scored by it, which weighted rows (feedback evidence) do not reach; they
        # shape only the fallback profile, which scores the LLMs without a head.
        head = self.llm_keys_.index(llm_key) if llm_key in self.llm_keys_ else -1
        fallback_profile = self.fallback_.profile(
            validation_embeddings, 1.0 - validation_errors, llm_key=llm_key, sample_weight=sample_weight
        )
        return np.concatenate([[float(head)], fallback_profile])

    def scores_with_fallback(self, profile: np.ndarray) -> bool:
        """True when the profiled LLM has no head and is scored by the fallback strategy."""
        return bool(np.asarray(profile)[0] < 0)

    def fallback_name(self) -> str:
        return self.fallback

    def _predict_loss(self, prompt_embeddings, profiles):
        heads = np.rint(profiles[:, 0]).astype(int)
        known = heads >= 0
        losses = np.empty((len(prompt_embeddings), len(profiles)))
        if known.any():
            logits = prompt_embeddings @ self.weights_[heads[known]].T + self.intercepts_[heads[known]]
            losses[:, known] = 1.0 - _sigmoid(logits)
        if not known.all():
            losses[:, ~known] = self.fallback_.predict_loss(prompt_embeddings, profiles[~known, 1:])
        return losses
