"""UniRoute LearnedMap (METHODS.md, "LearnedMap variant").

Φ_k(x; θ) = softmax_k(θ_kᵀφ(x) + b_k) softly assigns a prompt to K clusters. Ψ_k(h; θ) is h's
shrunk error on the validation prompts weighted by the same soft assignment,

    Ψ_k(h) = (Σ_x Φ_k(x) · err(x, h) + a · ē(h)) / (Σ_x Φ_k(x) + a)      (sums over answered x ∈ S_val)

and γ(x, h) = Σ_k Φ_k(x) Ψ_k(h). θ is trained on S_tr by log-loss of γ against the training LLMs'
(possibly fractional) errors, with Ψ of the training LLMs computed from S_val through θ as above, so
the gradient flows through both Φ and Ψ. At test time θ is frozen and a new LLM's Ψ is one weighted
average over S_val.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from routing.strategies.base import RoutingStrategy
from routing.strategies.kmeans import spherical_centroids
from routing.strategies.profiles import EPS, overall_error, shrunk_cluster_errors


def soft_assignments(embeddings: np.ndarray, theta: np.ndarray, bias: np.ndarray) -> np.ndarray:
    logits = embeddings @ theta.T + bias
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


class _Objective:
    """Mean log-loss of γ on training prompts plus L2 on θ, with its exact gradient (numpy backprop)."""

    def __init__(self, train_embeddings, train_errors, validation_embeddings, validation_errors, prior_strength, l2):
        self.X, self.V = train_embeddings.astype(np.float64), validation_embeddings.astype(np.float64)
        self.train_answered = ~np.isnan(train_errors)
        self.targets = np.where(self.train_answered, train_errors, 0.0)
        self.val_answered = (~np.isnan(validation_errors)).astype(np.float64)
        self.val_errors = np.where(self.val_answered > 0, validation_errors, 0.0)
        self.prior = prior_strength * overall_error(validation_errors)  # [m]
        self.a, self.l2 = prior_strength, l2
        self.n_answered = max(int(self.train_answered.sum()), 1)

    def unpack(self, params):
        d = self.X.shape[1]
        k = len(params) // (d + 1)
        return params[: k * d].reshape(k, d), params[k * d:]

    def profiles(self, Q):
        numerator = Q.T @ self.val_errors + self.prior
        denominator = np.maximum(Q.T @ self.val_answered + self.a, EPS)
        return numerator / denominator, numerator, denominator

    def __call__(self, params):
        theta, bias = self.unpack(params)
        P, Q = soft_assignments(self.X, theta, bias), soft_assignments(self.V, theta, bias)
        psi, _, denominator = self.profiles(Q)
        gamma = np.clip(P @ psi, EPS, 1 - EPS)
        t = self.targets
        loss = -np.sum(self.train_answered * (t * np.log(gamma) + (1 - t) * np.log(1 - gamma))) / self.n_answered
        loss += self.l2 * np.sum(theta**2)
        d_gamma = self.train_answered * (gamma - t) / (gamma * (1 - gamma)) / self.n_answered  # [n, m]
        d_psi = P.T @ d_gamma  # [K, m]
        d_P = d_gamma @ psi.T  # [n, K]
        d_numerator = d_psi / denominator
        d_denominator = -d_psi * psi / denominator
        d_Q = self.val_errors @ d_numerator.T + self.val_answered @ d_denominator.T  # [n_val, K]
        d_logits_train = P * (d_P - np.sum(d_P * P, axis=1, keepdims=True))
        d_logits_val = Q * (d_Q - np.sum(d_Q * Q, axis=1, keepdims=True))
        d_theta = d_logits_train.T @ self.X + d_logits_val.T @ self.V + 2 * self.l2 * theta
        d_bias = d_logits_train.sum(axis=0) + d_logits_val.sum(axis=0)
        return loss, np.concatenate([d_theta.ravel(), d_bias])

    def held_out_loss(self, params, embeddings, errors):
        theta, bias = self.unpack(params)
        psi, _, _ = self.profiles(soft_assignments(self.V, theta, bias))
        gamma = np.clip(soft_assignments(embeddings, theta, bias) @ psi, EPS, 1 - EPS)
        answered = ~np.isnan(errors)
        t = errors[answered]
        return float(-np.mean(t * np.log(gamma[answered]) + (1 - t) * np.log(1 - gamma[answered])))


class UniRouteLearnedMap(RoutingStrategy):
    """UniRoute with a learned soft cluster map θ ∈ R^{K×D} (+ bias), initialised from K-means.

    θ starts at ``init_scale`` × the unit K-means centroids (a near-hard assignment, i.e. UniRoute
    K-means), then L-BFGS minimises the log-loss above plus ``l2``·‖θ‖². Training stops when the
    log-loss on a held-out ``early_stopping_fraction`` of the training prompts has not improved for
    ``patience`` iterations, keeping the best θ. ``prior_strength`` is the pseudo-count a.
    """

    name = "uniroute_learnedmap"
    learned_attributes = ("theta_", "bias_", "n_iter_", "held_out_log_loss_")

    def __init__(
        self,
        n_clusters: int = 20,
        prior_strength: float = 5.0,
        init_scale: float = 20.0,
        l2: float = 1e-5,
        max_iter: int = 200,
        early_stopping_fraction: float = 0.1,
        patience: int = 10,
        n_init: int = 3,
        random_state: int | None = 0,
    ):
        self.n_clusters = n_clusters
        self.prior_strength = prior_strength
        self.init_scale = init_scale
        self.l2 = l2
        self.max_iter = max_iter
        self.early_stopping_fraction = early_stopping_fraction
        self.patience = patience
        self.n_init = n_init
        self.random_state = random_state

    def _fit(self, train_embeddings, train_errors, validation_embeddings, validation_errors, llm_keys):
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(len(train_embeddings))
        n_held_out = int(round(self.early_stopping_fraction * len(order)))
        held_out, kept = order[:n_held_out], order[n_held_out:]
        centroids = spherical_centroids(
            train_embeddings[kept], self.n_clusters, n_init=self.n_init, random_state=self.random_state
        )
        objective = _Objective(
            train_embeddings[kept], train_errors[kept], validation_embeddings, validation_errors, self.prior_strength, self.l2
        )
        start = np.concatenate([(self.init_scale * centroids).ravel(), np.zeros(len(centroids))]).astype(np.float64)
        best = {"params": start, "loss": np.inf, "stale": 0, "iterations": 0}

        def track_held_out(intermediate_result):
            best["iterations"] += 1
            if n_held_out == 0:
                best["params"] = intermediate_result.x.copy()
                return
            loss = objective.held_out_loss(intermediate_result.x, train_embeddings[held_out], train_errors[held_out])
            if loss < best["loss"] - 1e-7:
                best.update(params=intermediate_result.x.copy(), loss=loss, stale=0)
            else:
                best["stale"] += 1
                if best["stale"] >= self.patience:
                    raise StopIteration

        if n_held_out:
            best["loss"] = objective.held_out_loss(start, train_embeddings[held_out], train_errors[held_out])
        minimize(objective, start, jac=True, method="L-BFGS-B", callback=track_held_out, options={"maxiter": self.max_iter})
        self.theta_, self.bias_ = (np.asarray(p, dtype=np.float32) for p in objective.unpack(best["params"]))
        self.n_iter_ = int(best["iterations"])
        self.held_out_log_loss_ = float(best["loss"]) if n_held_out else float("nan")

    def _profile(self, validation_embeddings, validation_errors, llm_key):
        memberships = soft_assignments(validation_embeddings, self.theta_, self.bias_)
        return shrunk_cluster_errors(memberships, validation_errors, self.prior_strength)

    def _predict_loss(self, prompt_embeddings, profiles):
        return soft_assignments(prompt_embeddings, self.theta_, self.bias_) @ profiles.T

    def cluster_of(self, prompt_embeddings):
        self._check_fitted()
        embeddings = np.atleast_2d(np.asarray(prompt_embeddings, dtype=np.float32))
        return np.argmax(embeddings @ self.theta_.T + self.bias_, axis=1)
