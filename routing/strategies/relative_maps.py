"""routerhub's own strategy: an ensemble of LearnedMaps trained on the *relative* loss, with an
optional local correction from the nearest validation prompts.

Why it beats UniRoute on unseen LLMs (figures in the README):
- UniRoute's LearnedMap is trained by log-loss, which is dominated by how hard a prompt is for
  every LLM. Routing only needs how LLMs *differ* on a prompt (METHODS.md: the rule compares
  γ(x, h) + λ·c(h) across h). The ``"relative"`` loss of ``learned_map.py`` — squared error of γ
  centred across the training LLMs on each prompt — trains the map on exactly that.
- A new LLM's profile comes from a few hundred validation answers, so it is noisy; averaging the
  predictions of maps at several resolutions (the members' K) averages that noise out and hedges
  the choice of K.
- A cluster mixes topics, so an LLM that is strong on one topic only is blurred with the rest of its
  cluster. The local correction adds h's mean *residual* (validation error minus the maps'
  prediction) over the ``local_neighbours`` validation prompts nearest to x, shrunk by a prior worth
  ``local_strength`` prompts:  γ(x, h) = γ_maps(x, h) + k / (k + s) · mean_{v ∈ N_k(x)} r_h(v).
  It is a two-level shrinkage estimate — prompt-level evidence pulled towards the cluster-level
  estimate — and with ``local_strength=None`` it is off.

Every member is a UniRoute LearnedMap (soft assignment Φ, validation-based Ψ with the same
pseudo-count prior), so the strategy stays universal: profiling a new LLM is one pass over S_val,
and γ_maps(x, h) = (1/R) Σ_r Φ^(r)(x)ᵀ Ψ^(r)(h).
"""

from __future__ import annotations

import numpy as np

from routing.strategies.base import RoutingStrategy
from routing.strategies.learned_map import fit_soft_map, softmax_rows
from routing.strategies.profiles import shrunk_cluster_errors


class RelativeMapEnsemble(RoutingStrategy):
    """Average of LearnedMaps with K in ``cluster_grid``, each trained on the relative loss.

    The profile concatenates the members' Ψ (length Σ K) and, when the local correction is on, h's
    residual on every validation prompt; ``theta_`` stacks the members' θ row-wise and
    ``cluster_sizes_`` says where each member's rows start. Members are fitted independently (same
    seed), so ``with_params(cluster_grid=...)`` on a subset of the fitted grid equals a fresh fit with
    that subset. Hyper-parameters other than the grid and the local correction are those of
    ``UniRouteLearnedMap`` and apply to every member.
    """

    name = "relative_maps"
    learned_attributes = ("theta_", "bias_", "cluster_sizes_", "n_iter_", "validation_embeddings_")
    post_fit_params = ("cluster_grid", "prior_strength", "local_strength", "local_neighbours", "local_rule")

    def __init__(
        self,
        cluster_grid: tuple[int, ...] = (10, 20, 40, 80),
        prior_strength: float = 5.0,
        training_prior_strength: float = 5.0,
        local_strength: float | None = None,
        local_neighbours: int = 20,
        local_rule: str = "prior",
        init_scale: float = 20.0,
        l2: float = 1e-7,
        max_iter: int = 200,
        early_stopping_fraction: float = 0.1,
        patience: int = 10,
        n_init: int = 3,
        random_state: int | None = 0,
    ):
        self.cluster_grid = cluster_grid
        self.prior_strength = prior_strength
        self.training_prior_strength = training_prior_strength
        self.local_strength = local_strength
        self.local_neighbours = local_neighbours
        self.local_rule = local_rule
        self.init_scale = init_scale
        self.l2 = l2
        self.max_iter = max_iter
        self.early_stopping_fraction = early_stopping_fraction
        self.patience = patience
        self.n_init = n_init
        self.random_state = random_state

    def _fit(self, train_embeddings, train_errors, validation_embeddings, validation_errors, llm_keys):
        if not list(self.cluster_grid):
            raise ValueError("cluster_grid needs at least one cluster count")
        maps = [
            fit_soft_map(
                train_embeddings, train_errors, validation_embeddings, validation_errors,
                n_clusters=int(n_clusters), prior_strength=self.training_prior_strength, init_scale=self.init_scale,
                l2=self.l2, loss="relative", max_iter=self.max_iter,
                early_stopping_fraction=self.early_stopping_fraction, patience=self.patience,
                n_init=self.n_init, random_state=self.random_state,
            )
            for n_clusters in self.cluster_grid
        ]
        self.theta_ = np.vstack([m.theta for m in maps])
        self.bias_ = np.concatenate([m.bias for m in maps])
        self.cluster_sizes_ = [len(m.bias) for m in maps]
        self.n_iter_ = [m.n_iter for m in maps]
        self.validation_embeddings_ = np.ascontiguousarray(validation_embeddings, dtype=np.float32)

    def with_params(self, **params):
        clone = super().with_params(**params)
        if "cluster_grid" in params:
            fitted = [int(k) for k in self.cluster_grid]
            wanted = [int(k) for k in params["cluster_grid"]]
            if not wanted or any(k not in fitted for k in wanted):
                raise ValueError(f"cluster_grid {wanted} is not a subset of the fitted members {fitted}: refit")
            bounds = np.cumsum([0, *self.cluster_sizes_])
            members = [fitted.index(k) for k in wanted]
            rows = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in members])
            clone.theta_, clone.bias_ = self.theta_[rows], self.bias_[rows]
            clone.cluster_sizes_ = [self.cluster_sizes_[i] for i in members]
            clone.n_iter_ = [self.n_iter_[i] for i in members]
        return clone

    def _memberships(self, embeddings: np.ndarray) -> list[np.ndarray]:
        """Each member's soft assignment [n, K_r], from one matrix product for all members."""
        logits = embeddings @ self.theta_.T + self.bias_
        bounds = np.cumsum([0, *self.cluster_sizes_])
        return [softmax_rows(logits[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def _maps_loss(self, memberships: list[np.ndarray], map_profiles: np.ndarray) -> np.ndarray:
        bounds = np.cumsum([0, *self.cluster_sizes_])
        total = sum(m @ map_profiles[:, a:b].T for m, a, b in zip(memberships, bounds[:-1], bounds[1:]))
        return total / len(memberships)

    @property
    def _local(self) -> bool:
        return self.local_strength is not None

    def _profile(self, validation_embeddings, validation_errors, llm_key):
        memberships = self._memberships(validation_embeddings)
        psi = np.concatenate([shrunk_cluster_errors(m, validation_errors, self.prior_strength) for m in memberships])
        if not self._local:
            return psi
        if len(validation_errors) != len(self.validation_embeddings_):
            raise ValueError(
                f"the local correction needs the {len(self.validation_embeddings_)} validation prompts the strategy was "
                f"fitted with, got {len(validation_errors)}"
            )
        predicted = self._maps_loss(memberships, psi[None, :])[:, 0]
        residual = np.where(np.isnan(validation_errors), 0.0, validation_errors - predicted)  # no answer: no evidence
        return np.concatenate([psi, residual])

    def _predict_loss(self, prompt_embeddings, profiles):
        n_map = int(sum(self.cluster_sizes_))
        loss = self._maps_loss(self._memberships(prompt_embeddings), profiles[:, :n_map])
        if not self._local:
            return loss
        similarity = prompt_embeddings @ self.validation_embeddings_.T
        k = min(int(self.local_neighbours), similarity.shape[1])
        neighbours = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        local_residual = profiles[:, n_map:][:, neighbours].mean(axis=2).T  # [n_prompts, n_llms]
        if self.local_rule == "stein":
            noise = np.clip(loss, 0.01, 0.99) * (1 - np.clip(loss, 0.01, 0.99)) / k
            keep = np.maximum(0.0, 1.0 - float(self.local_strength) * noise / np.maximum(local_residual**2, 1e-12))
            return loss + keep * local_residual
        return loss + k / (k + float(self.local_strength)) * local_residual

    @classmethod
    def from_state(cls, state: dict):
        # States stored before the local correction existed have no validation embeddings; they route as before.
        if "validation_embeddings_" not in state:
            state = {**state, "validation_embeddings_": np.zeros((0, 0), dtype=np.float32)}
        return super().from_state(state)
