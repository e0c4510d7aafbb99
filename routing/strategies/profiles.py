"""How validation outcomes become LLM profiles Ψ(h) (METHODS.md, "UniRoute").

Ψ_k(h) is h's mean error on the validation prompts of cluster k. Small clusters are noisy, so each
cluster mean is shrunk towards h's overall validation error ē(h) with a pseudo-count prior of
strength a (a Beta prior centred on ē(h) holding a prompts' worth of evidence):

    Ψ_k(h) = (Σ_x w_xk · err(x, h) + a · ē(h)) / (Σ_x w_xk + a)

where the sums run over the validation prompts h answered and w_xk is x's membership of cluster k
(one-hot for K-means, the soft assignment Φ_k(x) for LearnedMap). An empty cluster gets ē(h).

A row may carry a weight ω_x ≥ 0 (``weights``; default 1): it then counts as ω_x answers, in the
cluster sums and in ē(h) alike. Feedback evidence (``evidence.py``) is such rows, appended to an LLM's
validation rows.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def answered_weights(errors: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Each entry's weight as an answer, shaped like ``errors``: 0 where NaN, else the row's weight (1 by default)."""
    answered = (~np.isnan(errors)).astype(np.float64)
    if weights is None:
        return answered
    return answered * np.asarray(weights, dtype=np.float64).reshape((-1,) + (1,) * (errors.ndim - 1))


def overall_error(errors: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean error per LLM over its answered prompts (NaN ignored, rows weighted by ``weights`` [n]); works on
    [n] or [n, m]."""
    answered = answered_weights(errors, weights)
    count = answered.sum(axis=0)
    total = (answered * np.where(np.isnan(errors), 0.0, errors)).sum(axis=0)
    # An LLM without a single outcome has no evidence at all: treat it as a coin flip.
    return np.where(count > 0, total / np.where(count > 0, count, 1.0), 0.5)


def shrunk_cluster_errors(
    memberships: np.ndarray,
    errors: np.ndarray,
    prior_strength: float,
    prior: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Ψ [K] for errors [n] or Ψ [K, m] for errors [n, m], from memberships [n, K] (see module docstring).

    ``prior`` replaces ē(h) as what each cluster is shrunk towards: one value per cluster ([K] or
    [K, m]), e.g. a coarser map's estimate there (``relative_maps``' nested profiles). ``weights`` [n]
    weighs the rows (module docstring).
    """
    answered = answered_weights(errors, weights)
    weighted_errors = memberships.T @ (answered * np.where(np.isnan(errors), 0.0, errors))
    cluster_weights = memberships.T @ answered
    centre = overall_error(errors, weights) if prior is None else prior
    evidence = cluster_weights + prior_strength
    shrunk = (weighted_errors + prior_strength * centre) / np.maximum(evidence, EPS)
    return np.where(evidence > 0, shrunk, centre)


def one_hot(cluster: np.ndarray, n_clusters: int) -> np.ndarray:
    memberships = np.zeros((len(cluster), n_clusters))
    memberships[np.arange(len(cluster)), cluster] = 1.0
    return memberships


def log_loss(predicted_errors: np.ndarray, errors: np.ndarray) -> float:
    """Mean binary cross-entropy over answered entries; targets may be fractional."""
    answered = ~np.isnan(errors)
    p = np.clip(predicted_errors[answered], EPS, 1 - EPS)
    t = errors[answered]
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))


def nearest_centroid(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the most cosine-similar centroid; centroids are unit vectors, embeddings L2-normalised."""
    return np.argmax(embeddings @ centroids.T, axis=1)
