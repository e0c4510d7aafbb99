"""RouteLLM-style matrix factorisation, made universal (RouteLLM, Ong et al. 2024; RELATED.md).

RouteLLM's MF router scores a prompt and an LLM bilinearly: a learned map W projects the prompt
embedding to d dimensions and each LLM has a learned vector v_h there. Here the score is the
probability that h answers x correctly,

    P(correct | x, h) = σ(b_h + v_hᵀ W φ(x)),      γ(x, h) = 1 − P(correct | x, h),

with W, the training LLMs' v_h and b_h learned jointly by log-loss on the training outcomes (+ l2).
RouteLLM learns v_h only for the LLMs it was trained on; to route among unseen LLMs, W is frozen
and *every* LLM's (b_h, v_h) — training LLMs' included — is fitted on its validation outcomes alone:
a small logistic regression on the d features W φ(x) with a Gaussian prior centred on the training
LLMs' mean vector, worth ``profile_l2`` prompts of evidence. That is a universal router in
UniRoute's sense: Ψ(h) = (b_h, v_h) comes from S_val, no refit.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from routing.strategies.base import RoutingStrategy
from routing.strategies.profiles import EPS


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def _log_loss_gradient(logits, targets, answered):
    """Summed log-loss over answered entries and its gradient with respect to the logits."""
    p = np.clip(_sigmoid(logits), EPS, 1 - EPS)
    loss = -np.sum(answered * (targets * np.log(p) + (1 - targets) * np.log(1 - p)))
    return loss, answered * (p - targets)


class MatrixFactorisation(RoutingStrategy):
    """Bilinear prompt × LLM model; unseen LLMs get their vector from validation outcomes (module docstring)."""

    name = "routellm_mf"
    learned_attributes = ("projection_", "mean_llm_", "n_iter_")
    post_fit_params = ("profile_l2",)

    def __init__(
        self,
        dim: int = 16,
        l2: float = 1e-4,
        profile_l2: float = 1.0,
        max_iter: int = 300,
        random_state: int | None = 0,
    ):
        self.dim = dim
        self.l2 = l2
        self.profile_l2 = profile_l2
        self.max_iter = max_iter
        self.random_state = random_state

    def _fit(self, train_embeddings, train_errors, validation_embeddings, validation_errors, llm_keys):
        if int(self.dim) < 1:
            raise ValueError(f"dim must be at least 1, got {self.dim}")
        X = train_embeddings.astype(np.float64)
        answered = ~np.isnan(train_errors)
        targets = np.where(answered, 1.0 - train_errors, 0.0)
        n, D = X.shape
        m, d = train_errors.shape[1], int(self.dim)
        n_answered = max(int(answered.sum()), 1)
        rng = np.random.default_rng(self.random_state)
        start = np.concatenate(
            [
                rng.normal(scale=1.0 / np.sqrt(D), size=d * D),  # W
                rng.normal(scale=0.1, size=m * d),  # V
                np.log(
                    np.clip(targets.sum(0) / np.maximum(answered.sum(0), 1), 0.05, 0.95)
                    / np.clip(1 - targets.sum(0) / np.maximum(answered.sum(0), 1), 0.05, 0.95)
                ),  # b: each LLM's log-odds
            ]
        )

        def objective(params):
            W = params[: d * D].reshape(d, D)
            V = params[d * D : d * D + m * d].reshape(m, d)
            b = params[d * D + m * d :]
            Z = X @ W.T  # [n, d]
            loss, d_logits = _log_loss_gradient(Z @ V.T + b, targets, answered)
            d_logits /= n_answered
            d_Z = d_logits @ V  # [n, d]
            d_W = d_Z.T @ X + 2 * self.l2 * W
            d_V = d_logits.T @ Z + 2 * self.l2 * V
            value = loss / n_answered + self.l2 * (np.sum(W**2) + np.sum(V**2))
            return value, np.concatenate([d_W.ravel(), d_V.ravel(), d_logits.sum(axis=0)])

        result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": int(self.max_iter)})
        W = result.x[: d * D].reshape(d, D)
        V = result.x[d * D : d * D + m * d].reshape(m, d)
        b = result.x[d * D + m * d :]
        self.projection_ = W.astype(np.float32)
        self.mean_llm_ = np.concatenate([[b.mean()], V.mean(axis=0)]).astype(np.float64)  # the prior's centre
        self.n_iter_ = int(result.nit)

    def _profile(self, validation_embeddings, validation_errors, llm_key, sample_weight=None):
        answered = ~np.isnan(validation_errors)
        features = np.hstack([np.ones((int(answered.sum()), 1)), validation_embeddings[answered] @ self.projection_.T])
        targets = 1.0 - validation_errors[answered]
        # A row of weight ω counts as ω answers in the log-likelihood (feedback evidence, ``evidence.py``).
        row_weights = 1.0 if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)[answered]
        centre, precision = self.mean_llm_, float(self.profile_l2)

        def objective(params):
            loss, d_logits = _log_loss_gradient(features @ params, targets, row_weights)
            offset = params - centre
            return loss + precision * offset @ offset, features.T @ d_logits + 2 * precision * offset

        return minimize(objective, centre.copy(), jac=True, method="L-BFGS-B", options={"maxiter": 200}).x

    def _predict_loss(self, prompt_embeddings, profiles):
        features = prompt_embeddings @ self.projection_.T
        return 1.0 - _sigmoid(profiles[:, 0] + features @ profiles[:, 1:].T)
