"""The one interface every routing strategy implements (METHODS.md, "UniRoute").

A strategy maps a prompt embedding φ(x) and an LLM profile Ψ(h) to a predicted loss γ(x, h) in [0, 1]
(loss = 1 − correctness). ``fit`` learns from the *training* LLMs only; ``profile`` turns any LLM's
correctness on the validation prompts into Ψ(h) without refitting, which is what lets a fitted router
take LLMs it never saw in training.

Conventions follow scikit-learn: hyper-parameters are constructor arguments stored as-is, ``fit``
returns ``self``, learned state ends with ``_`` and is listed in ``learned_attributes``.
Correctness arrays use NaN for "this LLM has no outcome on this prompt" everywhere.

``profile`` and ``profile_choice`` take an optional ``sample_weight`` [n_val] ≥ 0: a row of weight ω
counts as ω answers. Rows beyond the validation prompts may be passed that way (feedback evidence:
``evidence.py``), so evidence changes a profile without a refit. A strategy whose profile cannot hold
extra or weighted rows says so with ``takes_sample_weight = False`` and refuses weights other than 1.
"""

from __future__ import annotations

import copy
import functools
import inspect
from abc import ABC, abstractmethod
from typing import ClassVar, Self

import numpy as np


class StrategyNotFitted(RuntimeError):
    """The strategy was asked to profile, predict or export before ``fit`` (or ``from_state``)."""


class RoutingStrategy(ABC):
    name: ClassVar[str]
    universal: ClassVar[bool] = True  # False: scores only the LLMs it was trained on (Routoo)
    learned_attributes: ClassVar[tuple[str, ...]] = ()
    # Learned attributes a stored state may lack (it was fitted by a version without them): ``from_state`` leaves them unset and
    # the strategy works without them (per-LLM smoothing then keeps the tuned prior for every LLM).
    optional_attributes: ClassVar[tuple[str, ...]] = ()
    # The hyper-parameter that sets the model's size (clusters or neighbours), for `fit_router --k`.
    size_parameter: ClassVar[str | None] = None
    # Hyper-parameters that only ``profile`` / ``predict_loss`` read: a fitted strategy can try other
    # values without a refit (``with_params``), which keeps self-tuning (``tuning.py``) cheap.
    post_fit_params: ClassVar[tuple[str, ...]] = ()
    # False when ``fit`` never reads the training LLMs' outcomes (K-means, K-NN): the tuner then fits
    # once instead of once per fold of training LLMs.
    fit_uses_outcomes: ClassVar[bool] = True
    # False when a profile cannot weigh its rows (``profile(sample_weight=...)`` then refuses weights ≠ 1).
    takes_sample_weight: ClassVar[bool] = True

    # -- public interface ---------------------------------------------------------------------------
    def fit(
        self,
        train_embeddings: np.ndarray,
        train_correctness: np.ndarray,
        *,
        validation_embeddings: np.ndarray,
        validation_correctness: np.ndarray,
        llm_keys: list[str] | None = None,
    ) -> Self:
        """Learn from the training LLMs' correctness on train prompts [n_train, m] and validation prompts [n_val, m].

        ``llm_keys`` names the m training LLMs; only strategies that keep per-LLM parameters use it.
        A refit starts from scratch: every learned attribute is recomputed.
        """
        train_embeddings, train_errors = _check_outcomes(train_embeddings, train_correctness, "train")
        validation_embeddings, validation_errors = _check_outcomes(
            validation_embeddings, validation_correctness, "validation"
        )
        if train_errors.shape[1] != validation_errors.shape[1]:
            raise ValueError(
                f"train correctness has {train_errors.shape[1]} LLMs but validation has {validation_errors.shape[1]}"
            )
        if train_embeddings.shape[1] != validation_embeddings.shape[1]:
            raise ValueError("train and validation embeddings have different dimensions")
        if llm_keys is not None and len(llm_keys) != train_errors.shape[1]:
            raise ValueError(f"{len(llm_keys)} llm_keys for {train_errors.shape[1]} training LLMs")
        for attribute in self.learned_attributes:
            self.__dict__.pop(attribute, None)
        self._fit(train_embeddings, train_errors, validation_embeddings, validation_errors, llm_keys)
        return self

    def profile(
        self,
        validation_embeddings: np.ndarray,
        validation_correctness_of_one_llm: np.ndarray,
        *,
        llm_key: str | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> np.ndarray:
        """Ψ(h): a 1-D float vector from one LLM's correctness on the validation prompts (NaN = not answered).

        ``sample_weight`` [n_val] ≥ 0 weighs the rows (module docstring); None weighs each row 1.
        """
        self._check_fitted()
        embeddings, correctness, weights = self._profile_inputs(
            validation_embeddings, validation_correctness_of_one_llm, sample_weight
        )
        answered = ~np.isnan(correctness)
        if not answered.any():
            who = f"LLM {llm_key!r}" if llm_key else "this LLM"
            raise ValueError(f"{who} has no outcome on the validation prompts, so it cannot be profiled")
        if np.any((correctness[answered] < 0) | (correctness[answered] > 1)):
            raise ValueError("correctness must lie in [0, 1]")
        return np.asarray(self._profile(embeddings, 1.0 - correctness, llm_key, weights), dtype=np.float64)

    def predict_loss(self, prompt_embeddings: np.ndarray, profiles: np.ndarray) -> np.ndarray:
        """Expected loss [n_prompts, n_llms] in [0, 1] for stacked profiles [n_llms, P]."""
        self._check_fitted()
        embeddings = np.asarray(prompt_embeddings, dtype=np.float32)
        profiles = np.asarray(profiles, dtype=np.float64)
        if embeddings.ndim != 2 or profiles.ndim != 2:
            raise ValueError("predict_loss needs embeddings [n_prompts, D] and profiles [n_llms, P]")
        return np.clip(self._predict_loss(embeddings, profiles), 0.0, 1.0)

    def profile_choice(
        self,
        validation_embeddings: np.ndarray,
        validation_correctness_of_one_llm: np.ndarray,
        *,
        sample_weight: np.ndarray | None = None,
    ) -> dict | None:
        """What the profile of this LLM chose for it alone (``smoothing.Smoothing.as_json``), or None when the
        strategy smooths every LLM alike. Same inputs as :meth:`profile`."""
        self._check_fitted()
        embeddings, correctness, weights = self._profile_inputs(
            validation_embeddings, validation_correctness_of_one_llm, sample_weight
        )
        if np.isnan(correctness).all():
            return None
        return self._profile_choice(embeddings, 1.0 - correctness, weights)

    def _profile_inputs(self, embeddings, correctness, sample_weight):
        """(embeddings, correctness, weights or None) checked; a row of weight 0 is read as not answered."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        correctness = np.asarray(correctness, dtype=np.float64)
        if embeddings.ndim != 2 or correctness.ndim != 1 or len(correctness) != len(embeddings):
            raise ValueError("profile needs embeddings [n_val, D] and one LLM's correctness [n_val]")
        if sample_weight is None:
            return embeddings, correctness, None
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.shape != correctness.shape:
            raise ValueError(f"sample_weight needs one weight per row ({len(correctness)}), got shape {weights.shape}")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("sample_weight must be finite and non-negative")
        if np.all(weights == 1.0):
            return embeddings, correctness, None
        if not self.takes_sample_weight:
            raise ValueError(f"{self.name} profiles cannot weigh rows: sample_weight must be None or all 1")
        return embeddings, np.where(weights > 0, correctness, np.nan), weights

    def evidence(
        self,
        validation_embeddings: np.ndarray,
        validation_correctness_of_one_llm: np.ndarray,
        *,
        sample_weight: np.ndarray | None = None,
    ) -> np.ndarray:
        """n(h): how much evidence stands behind one LLM's profile, a 1-D vector that
        :meth:`evidence_at` reads per prompt (``exploration.py``). Same inputs as :meth:`profile`;
        ``sample_weight`` [n_val] weighs each answer (1 each by default).

        Each entry is an answered weight — the validation answers in one of the strategy's cells
        (clusters, validation prompts) — so it is what the profile's estimate there was computed from.
        """
        embeddings, answered, _ = self._evidence_inputs(
            validation_embeddings, validation_correctness_of_one_llm, sample_weight
        )
        return np.asarray(self._evidence(embeddings, answered), dtype=np.float64)

    def error_evidence(
        self,
        validation_embeddings: np.ndarray,
        validation_correctness_of_one_llm: np.ndarray,
        *,
        sample_weight: np.ndarray | None = None,
    ) -> np.ndarray:
        """s(h): the weighted error behind each entry of :meth:`evidence` (same cells, same inputs), so
        that :meth:`evidence_at` reads the LLM's own error count s(x, h) near a prompt from it, and
        s / n is its own unsmoothed error there. A cell's reading is linear in the weights it sums,
        so the same reading serves both."""
        embeddings, answered, errors = self._evidence_inputs(
            validation_embeddings, validation_correctness_of_one_llm, sample_weight
        )
        return np.asarray(self._evidence(embeddings, answered * errors), dtype=np.float64)

    def _evidence_inputs(self, embeddings, correctness, sample_weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings, answered weight [n_val], error [n_val] with 0 where unanswered), checked."""
        self._check_fitted()
        embeddings = np.asarray(embeddings, dtype=np.float32)
        correctness = np.asarray(correctness, dtype=np.float64)
        if embeddings.ndim != 2 or correctness.ndim != 1 or len(correctness) != len(embeddings):
            raise ValueError("evidence needs embeddings [n_val, D] and one LLM's correctness [n_val]")
        weights = np.ones(len(correctness)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if weights.shape != correctness.shape or np.any(~np.isfinite(weights) | (weights < 0)):
            raise ValueError("sample_weight must hold one finite non-negative weight per validation prompt")
        answered = np.where(np.isnan(correctness), 0.0, weights)
        return embeddings, answered, np.where(np.isnan(correctness), 0.0, 1.0 - correctness)

    def evidence_at(self, prompt_embeddings: np.ndarray, evidence: np.ndarray) -> np.ndarray:
        """n(x, h) [n_prompts, n_llms]: the evidence near each prompt, from stacked :meth:`evidence`
        vectors [n_llms, C] — the answered weight the strategy's estimate γ(x, h) rests on."""
        return self._read_evidence("evidence_at", self._evidence_at, prompt_embeddings, evidence)

    def fine_evidence_at(
        self, prompt_embeddings: np.ndarray, evidence: np.ndarray, levels: np.ndarray | None = None
    ) -> np.ndarray:
        """[n_prompts, n_llms]: the same reading of stacked :meth:`evidence` (or :meth:`error_evidence`)
        vectors in the finest cell near each prompt that each LLM's own answers can speak for (a fine
        cluster of per-LLM profiles, at the LLM's :meth:`evidence_level`); :meth:`evidence_at` where the
        strategy keeps no cell finer than its own. ``levels`` [n_llms] gives each LLM's level (needed
        to read error vectors, whose sums are not answers); None reads each row at its own."""
        evidence = np.asarray(evidence, dtype=np.float64)
        if levels is None and evidence.ndim == 2:
            levels = self.evidence_levels(evidence)
        read = functools.partial(self._fine_evidence_at, levels=np.asarray(levels, dtype=int))
        return self._read_evidence("fine_evidence_at", read, prompt_embeddings, evidence)

    def evidence_level(self, evidence: np.ndarray) -> int:
        """Which of the fine maps one :meth:`evidence` vector (answers, not errors) is read on: the finest
        on which the LLM holds enough answers per cell (``smoothing.FineMaps.test_level``); 0 for a
        strategy with a single reading."""
        self._check_fitted()
        return int(self._evidence_level(np.asarray(evidence, dtype=np.float64)))

    def evidence_levels(self, evidence: np.ndarray) -> np.ndarray:
        """[n_llms]: :meth:`evidence_level` of each row of stacked :meth:`evidence` vectors [n_llms, C]."""
        return np.array([self.evidence_level(row) for row in np.atleast_2d(evidence)], dtype=int)

    def _read_evidence(self, name: str, read, prompt_embeddings: np.ndarray, evidence: np.ndarray) -> np.ndarray:
        self._check_fitted()
        embeddings = np.asarray(prompt_embeddings, dtype=np.float32)
        evidence = np.asarray(evidence, dtype=np.float64)
        if embeddings.ndim != 2 or evidence.ndim != 2:
            raise ValueError(f"{name} needs embeddings [n_prompts, D] and evidence [n_llms, C]")
        return np.maximum(read(embeddings, evidence), 0.0)

    def fine_cells(self, evidence: np.ndarray, level: int | None = None) -> np.ndarray:
        """The entries of one :meth:`evidence` (or :meth:`error_evidence`) vector that
        :meth:`fine_evidence_at` reads at ``level`` (None: the vector's own :meth:`evidence_level`):
        one per cell of that map, each answer counted once."""
        self._check_fitted()
        evidence = np.asarray(evidence, dtype=np.float64)
        return self._fine_cells(evidence, self.evidence_level(evidence) if level is None else int(level))

    def with_params(self, **params) -> Self:
        """A copy of this fitted strategy with other values of its post-fit hyper-parameters (no refit)."""
        self._check_fitted()
        not_post_fit = sorted(set(params) - set(self.post_fit_params))
        if not_post_fit:
            raise ValueError(f"{self.name} needs a refit to change {', '.join(not_post_fit)}")
        clone = copy.copy(self)
        clone.__dict__.update(params)
        return clone

    def cluster_of(self, prompt_embeddings: np.ndarray) -> np.ndarray | None:
        """Hard cluster id per prompt where the strategy has clusters, else None."""
        self._check_fitted()
        return None

    # -- what callers may ask of any strategy; the defaults describe a strategy without the feature --
    def centroids(self) -> np.ndarray | None:
        """Cluster centres [K, D] where prompts are assigned to the nearest one (stored as pgvector rows)."""
        return None

    def live_neighbour_count(self) -> int | None:
        """k when a prompt's loss is read off its k nearest validation prompts, so that a live prompt's
        neighbours may be found by a database index and passed to :meth:`loss_from_neighbours`."""
        return None

    def loss_from_neighbours(self, neighbour_rows: np.ndarray, profiles: np.ndarray) -> np.ndarray:
        """Loss [n_prompts, n_llms] from each prompt's validation neighbours (rows of S_val) [n_prompts, k]."""
        raise NotImplementedError(f"{self.name} does not predict from validation neighbours")

    def scores_with_fallback(self, profile: np.ndarray) -> bool:
        """True when this LLM's profile is scored by a universal fallback, not the strategy itself."""
        return False

    def fallback_name(self) -> str | None:
        """The strategy that scores LLMs this one cannot (non-universal strategies only)."""
        return None

    # -- state ---------------------------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD]

    def get_params(self) -> dict:
        return {name: getattr(self, name) for name in self.param_names()}

    def get_state(self) -> dict:
        """Hyper-parameters and learned arrays: plain JSON values plus numpy arrays, nothing else."""
        self._check_fitted()
        state = {"strategy": self.name, **{k: _plain(v) for k, v in self.get_params().items()}}
        for name in self.learned_attributes:
            if name in self.optional_attributes and not hasattr(self, name):
                continue
            value = getattr(self, name)
            if isinstance(value, RoutingStrategy):  # a nested strategy is stored flat, under a prefix
                state.update({_nested_prefix(name) + key: item for key, item in value.get_state().items()})
            else:
                state[name] = _plain(value)
        return state

    @classmethod
    def from_state(cls, state: dict) -> Self:
        if state.get("strategy", cls.name) != cls.name:
            raise ValueError(f"state of {state['strategy']!r} given to {cls.name!r}")
        strategy = cls(**{name: state[name] for name in cls.param_names() if name in state})
        for name in cls.learned_attributes:
            prefix = _nested_prefix(name)
            nested = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
            if nested:
                from routing.strategies import STRATEGIES  # the table imports every strategy module

                setattr(strategy, name, STRATEGIES[nested["strategy"]].from_state(nested))
            elif name in state:
                setattr(strategy, name, state[name])
            elif name not in cls.optional_attributes:
                raise ValueError(f"{cls.name} state lacks {name}")
        return strategy

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- for subclasses ------------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, train_embeddings, train_errors, validation_embeddings, validation_errors, llm_keys) -> None:
        """Set every learned attribute. Errors are 1 − correctness, NaN where missing."""

    @abstractmethod
    def _profile(self, validation_embeddings, validation_errors, llm_key, sample_weight=None) -> np.ndarray:
        """Ψ(h) from one LLM's validation errors [n_val] (NaN where missing, at least one answered), rows
        weighted by ``sample_weight`` [n_val] (None: each 1; never given when ``takes_sample_weight`` is False)."""

    @abstractmethod
    def _predict_loss(self, prompt_embeddings, profiles) -> np.ndarray: ...

    def _profile_choice(self, validation_embeddings, validation_errors, sample_weight=None) -> dict | None:
        return None

    def _evidence(self, validation_embeddings, answered_weights) -> np.ndarray:
        """One cell: a strategy whose estimate of an LLM draws on all its answers (a fitted
        embedding, a predictor head) rests on all of them, wherever the prompt lies."""
        return np.array([answered_weights.sum()])

    def _evidence_at(self, prompt_embeddings, evidence) -> np.ndarray:
        return np.broadcast_to(evidence[:, 0], (len(prompt_embeddings), len(evidence)))

    def _fine_evidence_at(self, prompt_embeddings, evidence, levels) -> np.ndarray:
        return self._evidence_at(prompt_embeddings, evidence)

    def _evidence_level(self, evidence) -> int:
        return 0

    def _fine_cells(self, evidence, level) -> np.ndarray:
        return evidence

    def _check_fitted(self) -> None:
        required = [a for a in self.learned_attributes if a not in self.optional_attributes]
        if not required or any(not hasattr(self, a) for a in required):
            raise StrategyNotFitted(f"{type(self).__name__} is not fitted yet: call fit() or from_state() first")


def _check_outcomes(embeddings, correctness, split: str) -> tuple[np.ndarray, np.ndarray]:
    embeddings = np.asarray(embeddings, dtype=np.float32)
    correctness = np.asarray(correctness, dtype=np.float64)
    if embeddings.ndim != 2 or correctness.ndim != 2 or len(embeddings) != len(correctness):
        raise ValueError(f"{split} needs embeddings [n, D] and correctness [n, m] with the same n")
    if len(embeddings) == 0 or correctness.shape[1] == 0:
        raise ValueError(f"{split} split is empty")
    answered = correctness[~np.isnan(correctness)]
    if np.any((answered < 0) | (answered > 1)):
        raise ValueError(f"{split} correctness must lie in [0, 1] (NaN = missing)")
    return embeddings, 1.0 - correctness


def _nested_prefix(attribute: str) -> str:
    """Key prefix of a nested strategy's state: ``fallback_`` → ``fallback.``."""
    return attribute.rstrip("_") + "."


def _plain(value):
    """numpy scalars → Python scalars and tuples → lists, so the small part of a state is JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
