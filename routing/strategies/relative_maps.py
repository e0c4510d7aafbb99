"""routerhub's own strategy: an ensemble of LearnedMaps trained on the *relative* loss.

Why it beats UniRoute on unseen LLMs (figures in docs/routing-and-evaluation.md):
- UniRoute's LearnedMap is trained by log-loss, which is dominated by how hard a prompt is for
  every LLM. Routing only needs how LLMs *differ* on a prompt (METHODS.md: the rule compares
  γ(x, h) + λ·c(h) across h). The ``"relative"`` loss of ``learned_map.py`` — squared error of γ
  centred across the training LLMs on each prompt — trains the map on exactly that.
- A new LLM's profile comes from a few hundred validation answers, so it is noisy; averaging the
  predictions of maps at several resolutions (the members' K) averages that noise out and hedges
  the choice of K.
- Which members (the cluster grid), the profiles' prior strength and l2 are chosen per data set
  by ``tuning.py``; members are independent fits, so every sub-ensemble is scored without a refit.
- ``profile_prior="nested"`` shrinks each member's clusters towards the next coarser member's
  estimate there instead of towards the LLM's overall error ē(h). A typical LLM's cluster errors
  differ little from ē(h), so the two agree; an LLM whose validation outcomes are extreme (right on
  one subject, wrong on the rest) keeps at the fine resolution what the coarse clusters, which mix
  subjects, blur — without it a specialist's fine clusters are pulled back to its poor average and
  it loses its own subject (``evaluation/specialists.py`` measures this). The finest member then
  predicts alone (its Ψ holds the coarser members' through the priors). A post-fit choice, tuned
  like the prior strength.

Every member is a UniRoute LearnedMap (soft assignment Φ, validation-based Ψ with the same
pseudo-count prior), so the strategy stays universal: profiling a new LLM is one pass over S_val,
and γ_maps(x, h) = (1/R) Σ_r Φ^(r)(x)ᵀ Ψ^(r)(h) (nested profiles: Φ^(R)(x)ᵀ Ψ^(R)(h), the finest).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routing.strategies.learned_map import SoftMapStrategy, softmax_rows
from routing.strategies.profiles import EPS, answered_weights, overall_error, shrunk_cluster_errors
from routing.strategies.smoothing import PerLLMProfiles

PROFILE_PRIORS = ("overall", "nested")


@dataclass(eq=False, repr=False)
class RelativeMapEnsemble(SoftMapStrategy):
    """Average of LearnedMaps with K in ``cluster_grid``, each trained on the relative loss.

    The profile concatenates the members' Ψ (length Σ K); ``theta_`` stacks the members' θ row-wise and
    ``cluster_sizes_`` says where each member's rows start. Members are fitted independently (same
    seed), so ``with_params(cluster_grid=...)`` on a subset of the fitted grid equals a fresh fit with
    that subset. The other hyper-parameters, but for ``profile_prior``, are ``SoftMapStrategy``'s and
    apply to every member. With ``smoothing="per_llm"`` an LLM whose own
    answers reject the prior strength is profiled on finer clusters with its own strength
    (``smoothing.py``): its profile is the members' Ψ followed by that tail. The fine maps are
    fitted beside the members, finer than the finest member of the fitted grid.
    """

    name = "relative_maps"
    learned_attributes = ("theta_", "bias_", "cluster_sizes_", "n_iter_", *PerLLMProfiles.fine_attributes)
    optional_attributes = PerLLMProfiles.fine_attributes
    post_fit_params = ("cluster_grid", "prior_strength", "profile_prior", "smoothing")

    cluster_grid: tuple[int, ...] = (10, 20, 40, 80)
    profile_prior: str = "overall"

    def _fit(self, train_embeddings, train_errors, validation_embeddings, validation_errors, llm_keys):
        if not list(self.cluster_grid):
            raise ValueError("cluster_grid needs at least one cluster count")
        if self.profile_prior not in PROFILE_PRIORS:
            raise ValueError(f"profile_prior must be one of {', '.join(PROFILE_PRIORS)}, got {self.profile_prior!r}")
        maps = [
            self._fit_soft_map(
                train_embeddings,
                train_errors,
                validation_embeddings,
                validation_errors,
                n_clusters=int(n_clusters),
                loss="relative",
            )
            for n_clusters in self.cluster_grid
        ]
        self.theta_ = np.vstack([m.theta for m in maps])
        self.bias_ = np.concatenate([m.bias for m in maps])
        self.cluster_sizes_ = [len(m.bias) for m in maps]
        self.n_iter_ = [m.n_iter for m in maps]
        self._fit_fine_maps(train_embeddings, validation_embeddings, validation_errors, min(self.cluster_sizes_))

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

    def _own_memberships(self, embeddings):
        return np.hstack(self._memberships(embeddings))

    def _own_width(self):
        return int(sum(self.cluster_sizes_))

    def _base_clusters(self):
        return max(self.cluster_sizes_)

    def _own_psi(self, validation_embeddings, validation_errors, weights=None):
        members = self._memberships(validation_embeddings)
        if self.profile_prior == "overall":
            return np.concatenate(
                [shrunk_cluster_errors(m, validation_errors, self.prior_strength, weights=weights) for m in members]
            )
        if self.profile_prior not in PROFILE_PRIORS:
            raise ValueError(f"profile_prior must be one of {', '.join(PROFILE_PRIORS)}, got {self.profile_prior!r}")
        # nested: coarse to fine, each member's prior in cluster k is the coarser member's estimate
        # averaged over the validation prompts of k (the coarsest is shrunk towards ē(h) as usual).
        answered = answered_weights(validation_errors, weights)
        psi: list[np.ndarray | None] = [None] * len(members)
        coarser_estimate = None  # [n_validation]: the previous member's γ on the validation prompts
        for r in np.argsort([m.shape[1] for m in members], kind="stable"):
            memberships = members[r]
            prior = None
            if coarser_estimate is not None:
                cluster_weights = memberships.T @ answered
                prior = (memberships.T @ (answered * coarser_estimate)) / np.maximum(cluster_weights, EPS)
                prior = np.where(cluster_weights > EPS, prior, overall_error(validation_errors, weights))
            psi[r] = shrunk_cluster_errors(
                memberships, validation_errors, self.prior_strength, prior=prior, weights=weights
            )
            coarser_estimate = memberships @ psi[r]
        return np.concatenate(psi)

    def _own_losses(self, prompt_embeddings, profiles):
        bounds = np.cumsum([0, *self.cluster_sizes_])
        members = self._memberships(prompt_embeddings)
        if self.profile_prior == "nested":
            # The finest member's Ψ already holds the coarser ones (its prior): averaging them in again
            # would blur back what it resolved.
            r = int(np.argmax(self.cluster_sizes_))
            return members[r] @ profiles[:, bounds[r] : bounds[r + 1]].T
        total = sum(m @ profiles[:, a:b].T for m, a, b in zip(members, bounds[:-1], bounds[1:]))
        return total / len(members)
