"""UniRoute LearnedMap (METHODS.md, "LearnedMap variant").

Φ_k(x; θ) = softmax_k(θ_kᵀφ(x) + b_k) softly assigns a prompt to K clusters. Ψ_k(h; θ) is h's
shrunk error on the validation prompts weighted by the same soft assignment,

    Ψ_k(h) = (Σ_x Φ_k(x) · err(x, h) + a · ē(h)) / (Σ_x Φ_k(x) + a)      (sums over answered x ∈ S_val)

and γ(x, h) = Σ_k Φ_k(x) Ψ_k(h). θ is trained on S_tr against the training LLMs' (possibly
fractional) errors, with Ψ of the training LLMs computed from S_val through θ as above, so the
gradient flows through both Φ and Ψ. At test time θ is frozen and a new LLM's Ψ is one weighted
average over S_val.

Two training losses are available:
- ``"log_loss"`` — binary cross-entropy of γ, as in the paper;
- ``"relative"`` — squared error of γ *centred across the training LLMs on each prompt* against the
  centred errors: it only rewards predicting how LLMs differ from each other on a prompt, which is
  what routing decides on, and ignores how hard the prompt is for everyone. routerhub's own
  ``relative_maps`` strategy uses it (see ``relative_maps.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from routing.strategies.base import RoutingStrategy
from routing.strategies.centroids import spherical_centroids
from routing.strategies.profiles import EPS, overall_error, shrunk_cluster_errors
from routing.strategies.smoothing import PerLLMProfiles

TRAINING_LOSSES = ("log_loss", "relative")


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def soft_assignments(embeddings: np.ndarray, theta: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Φ(x; θ) = softmax_k(θ_kᵀφ(x) + b_k), one row per prompt."""
    return softmax_rows(embeddings @ theta.T + bias)


def loss_and_gradient(gamma, targets, answered, loss: str) -> tuple[float, np.ndarray]:
    """Mean loss over answered (prompt, LLM) pairs and its gradient with respect to γ [n, m]."""
    n_answered = max(int(answered.sum()), 1)
    if loss == "log_loss":
        gamma = np.clip(gamma, EPS, 1 - EPS)
        value = -np.sum(answered * (targets * np.log(gamma) + (1 - targets) * np.log(1 - gamma))) / n_answered
        return float(value), answered * (gamma - targets) / (gamma * (1 - gamma)) / n_answered
    # relative: r = (γ − mean_h γ) − (t − mean_h t) over the LLMs answering the prompt; Σ_h r = 0,
    # so the gradient of Σ r² with respect to γ_h is simply 2 r_h.
    per_prompt = np.maximum(answered.sum(axis=1, keepdims=True), 1)
    centred = lambda values: answered * (values - np.sum(answered * values, axis=1, keepdims=True) / per_prompt)  # noqa: E731
    residual = centred(gamma) - centred(targets)
    return float(np.sum(residual**2) / n_answered), 2 * residual / n_answered


class _Objective:
    """Training loss of γ on training prompts plus L2 on θ, with its exact gradient (numpy backprop)."""

    def __init__(
        self, train_embeddings, train_errors, validation_embeddings, validation_errors, prior_strength, l2, loss
    ):
        self.X, self.V = train_embeddings.astype(np.float64), validation_embeddings.astype(np.float64)
        self.train_answered = ~np.isnan(train_errors)
        self.targets = np.where(self.train_answered, train_errors, 0.0)
        self.val_answered = (~np.isnan(validation_errors)).astype(np.float64)
        self.val_errors = np.where(self.val_answered > 0, validation_errors, 0.0)
        self.prior = prior_strength * overall_error(validation_errors)  # [m]
        self.a, self.l2, self.loss = prior_strength, l2, loss

    def unpack(self, params):
        d = self.X.shape[1]
        k = len(params) // (d + 1)
        return params[: k * d].reshape(k, d), params[k * d :]

    def profiles(self, Q):
        numerator = Q.T @ self.val_errors + self.prior
        denominator = np.maximum(Q.T @ self.val_answered + self.a, EPS)
        return numerator / denominator, denominator

    def __call__(self, params):
        theta, bias = self.unpack(params)
        P, Q = soft_assignments(self.X, theta, bias), soft_assignments(self.V, theta, bias)
        psi, denominator = self.profiles(Q)
        value, d_gamma = loss_and_gradient(P @ psi, self.targets, self.train_answered, self.loss)  # d_gamma [n, m]
        d_psi = P.T @ d_gamma  # [K, m]
        d_P = d_gamma @ psi.T  # [n, K]
        d_numerator = d_psi / denominator
        d_denominator = -d_psi * psi / denominator
        d_Q = self.val_errors @ d_numerator.T + self.val_answered @ d_denominator.T  # [n_val, K]
        d_logits_train = P * (d_P - np.sum(d_P * P, axis=1, keepdims=True))
        d_logits_val = Q * (d_Q - np.sum(d_Q * Q, axis=1, keepdims=True))
        d_theta = d_logits_train.T @ self.X + d_logits_val.T @ self.V + 2 * self.l2 * theta
        d_bias = d_logits_train.sum(axis=0) + d_logits_val.sum(axis=0)
        return value + self.l2 * np.sum(theta**2), np.concatenate([d_theta.ravel(), d_bias])

    def held_out_loss(self, params, embeddings, errors) -> float:
        theta, bias = self.unpack(params)
        psi, _ = self.profiles(soft_assignments(self.V, theta, bias))
        answered = ~np.isnan(errors)
        gamma = soft_assignments(embeddings, theta, bias) @ psi
        return loss_and_gradient(gamma, np.where(answered, errors, 0.0), answered, self.loss)[0]


@dataclass(frozen=True)
class SoftMap:
    theta: np.ndarray  # [K, D]
    bias: np.ndarray  # [K]
    n_iter: int
    held_out_loss: float


def fit_soft_map(
    train_embeddings,
    train_errors,
    validation_embeddings,
    validation_errors,
    *,
    n_clusters,
    prior_strength,
    init_scale,
    l2,
    loss,
    max_iter,
    early_stopping_fraction,
    patience,
    n_init,
    random_state,
) -> SoftMap:
    """θ from K-means initialisation by L-BFGS, stopped early on a held-out slice of the training prompts."""
    if loss not in TRAINING_LOSSES:
        raise ValueError(f"loss must be one of {', '.join(TRAINING_LOSSES)}, got {loss!r}")
    order = np.random.default_rng(random_state).permutation(len(train_embeddings))
    n_held_out = int(round(early_stopping_fraction * len(order)))
    held_out, kept = order[:n_held_out], order[n_held_out:]
    centroids = spherical_centroids(train_embeddings[kept], n_clusters, n_init=n_init, random_state=random_state)
    objective = _Objective(
        train_embeddings[kept], train_errors[kept], validation_embeddings, validation_errors, prior_strength, l2, loss
    )
    start = np.concatenate([(init_scale * centroids).ravel(), np.zeros(len(centroids))]).astype(np.float64)
    score = lambda params: objective.held_out_loss(params, train_embeddings[held_out], train_errors[held_out])  # noqa: E731
    best = {"params": start, "loss": score(start) if n_held_out else float("nan"), "stale": 0, "iterations": 0}

    def keep_best(intermediate_result):  # scipy passes an OptimizeResult to a parameter of this name
        best["iterations"] += 1
        if not n_held_out:
            best["params"] = intermediate_result.x.copy()
            return
        value = score(intermediate_result.x)
        if value < best["loss"] - 1e-9:
            best.update(params=intermediate_result.x.copy(), loss=value, stale=0)
        else:
            best["stale"] += 1
            if best["stale"] >= patience:
                raise StopIteration

    minimize(objective, start, jac=True, method="L-BFGS-B", callback=keep_best, options={"maxiter": max_iter})
    theta, bias = objective.unpack(best["params"])
    return SoftMap(theta.astype(np.float32), bias.astype(np.float32), best["iterations"], float(best["loss"]))


@dataclass(kw_only=True, eq=False, repr=False)
class SoftMapStrategy(PerLLMProfiles, RoutingStrategy):
    """A strategy built on soft maps Φ(x; θ): how θ is trained (:func:`fit_soft_map`; ``training_prior_strength``
    is the pseudo-count of the training LLMs' profiles while θ is learned) and the pseudo-count
    ``prior_strength`` of the profiles it makes (per LLM with ``smoothing="per_llm"``: ``smoothing.py``). Hyper-parameters are dataclass fields, so they are
    constructor arguments stored as-is; these are keyword-only, after a subclass's own.
    """

    prior_strength: float = 5.0
    smoothing: str = "per_llm"
    training_prior_strength: float = 5.0
    init_scale: float = 20.0
    l2: float = 1e-7
    max_iter: int = 200
    early_stopping_fraction: float = 0.1
    patience: int = 10
    n_init: int = 3
    random_state: int | None = 0

    def _fit_soft_map(
        self, train_embeddings, train_errors, validation_embeddings, validation_errors, *, n_clusters: int, loss: str
    ) -> SoftMap:
        return fit_soft_map(
            train_embeddings,
            train_errors,
            validation_embeddings,
            validation_errors,
            n_clusters=n_clusters,
            prior_strength=self.training_prior_strength,
            init_scale=self.init_scale,
            l2=self.l2,
            loss=loss,
            max_iter=self.max_iter,
            early_stopping_fraction=self.early_stopping_fraction,
            patience=self.patience,
            n_init=self.n_init,
            random_state=self.random_state,
        )


@dataclass(eq=False, repr=False)
class UniRouteLearnedMap(SoftMapStrategy):
    """UniRoute with a learned soft cluster map θ ∈ R^{K×D} (+ bias), initialised from K-means.

    θ starts at ``init_scale`` × the unit K-means centroids (a near-hard assignment, i.e. UniRoute
    K-means), then L-BFGS minimises ``loss`` (default: the paper's log-loss) plus ``l2``·‖θ‖².
    Training stops when the loss on a held-out ``early_stopping_fraction`` of the training prompts
    has not improved for ``patience`` iterations, keeping the best θ. ``prior_strength`` is the
    pseudo-count a of the profiles; ``training_prior_strength`` the one the training LLMs' profiles
    use while θ is learned, kept apart so that a can be tuned on a fitted θ (``tuning.py``).
    (A stronger ``l2`` such as 1e-5 shrinks θ until several clusters go unused.) With
    ``smoothing="per_llm"`` an LLM whose own answers reject a is profiled on finer clusters with its own
    strength (``smoothing.py``): its profile is Ψ [K] followed by that tail.
    """

    name = "uniroute_learnedmap"
    learned_attributes = ("theta_", "bias_", "n_iter_", "held_out_loss_", *PerLLMProfiles.fine_attributes)
    optional_attributes = PerLLMProfiles.fine_attributes
    size_parameter = "n_clusters"
    post_fit_params = ("prior_strength", "smoothing")

    n_clusters: int = 20
    loss: str = "log_loss"

    def _fit(self, train_embeddings, train_errors, validation_embeddings, validation_errors, llm_keys):
        soft_map = self._fit_soft_map(
            train_embeddings,
            train_errors,
            validation_embeddings,
            validation_errors,
            n_clusters=self.n_clusters,
            loss=self.loss,
        )
        self.theta_, self.bias_ = soft_map.theta, soft_map.bias
        self.n_iter_, self.held_out_loss_ = soft_map.n_iter, soft_map.held_out_loss
        self._fit_fine_maps(train_embeddings, validation_embeddings, validation_errors, len(self.bias_))

    def _own_memberships(self, embeddings):
        return soft_assignments(embeddings, self.theta_, self.bias_)

    def _own_psi(self, validation_embeddings, validation_errors, weights=None):
        return shrunk_cluster_errors(
            self._own_memberships(validation_embeddings), validation_errors, self.prior_strength, weights=weights
        )

    def _own_width(self):
        return len(self.bias_)

    def _base_clusters(self):
        return len(self.bias_)

    def _own_losses(self, prompt_embeddings, profiles):
        return soft_assignments(prompt_embeddings, self.theta_, self.bias_) @ profiles.T

    def cluster_of(self, prompt_embeddings):
        self._check_fitted()
        embeddings = np.atleast_2d(np.asarray(prompt_embeddings, dtype=np.float32))
        return np.argmax(embeddings @ self.theta_.T + self.bias_, axis=1)
