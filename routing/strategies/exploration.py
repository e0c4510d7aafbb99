"""Exploration: Thompson sampling among a request's candidates (opt-in per tenant).

A strategy's predicted loss γ(x, h) is a posterior mean; how much evidence stands behind it differs
by LLM. An LLM profiled on 50 validation prompts, or on none near this prompt, may be much better
(or worse) here than its estimate says, and routing only ever to the argmin never finds out.
Thompson sampling draws each candidate's loss from a posterior and routes on the draw, so an LLM is
tried in proportion to the probability that it is the best choice.

The posterior is that of the LLM's error in the finest cell near x that its own answers can speak
for (``RoutingStrategy.fine_evidence_at``: a cluster of the fine map the LLM's answers fill, the one
its departure is tested on, or a validation prompt's neighbours), from its own
answers there — n_f answered, s_f of them wrong (``evidence`` and ``error_evidence`` read there) —
under a Beta prior centred on its estimate γ(x, h) with the LLM's *own* empirical-Bayes strength â(h)
(``own_prior_weight``: the strength under which its own per-cell counts are most likely):

    ℓ̃(x, h) ~ Beta(s_f + w · γ,  n_f − s_f + w · (1 − γ)),   w = min(â(h), n(x, h) − n_f + PRIOR_COUNT)

where n(x, h) is the evidence behind γ itself (``evidence_at``). The estimate γ is shrunk by a prior
tuned on LLMs like the training ones (``profiles.py``), which is right for routing on it and wrong
for deciding what to try: a specialist right on its 4 answers near x is estimated near its overall
error (0.9) there, and a draw centred on that estimate with the tuned prior's certainty rarely falls
below the best candidate, so it is never tried and never shows what it can do. Its own answers
reject that prior (its cells differ far more than a generalist's), so â is small and its draw
follows its own answers in the fine cell. A generalist's â is large, and so is its evidence: its draw
stays close to its estimate. ``w`` is capped by the evidence behind γ because a prior centred on an
estimate cannot be surer than that estimate, and the fine cell's own answers, which γ also rests on,
are counted once: an LLM with 50 answers is drawn widely even when its few answers happen to look
alike (a large â), and where the strategy keeps no cell finer than its own (n_f = n) the draw is the
LLM's own answers there under a prior of PRIOR_COUNT answers centred on γ.

Without own counts for an LLM (``own`` None, or NaN entries: a profile stored with n alone) its draw
is centred on the estimate with the evidence behind it: Beta(γ · c, (1 − γ) · c), c = n(x, h) +
PRIOR_COUNT.

The chosen LLM is then the usual argmin ℓ̃ + λ·cost (or the cheapest reaching the quality target)
among the same candidates: exploration changes which candidate is preferred, never which are
allowed, so the allow mask, the cost cap and the budget apply exactly as without it.

Only a share of requests explores (``share``, 0 = never); the others route on γ itself. Everything
random comes from the ``numpy.random.Generator`` the caller passes, so a seed makes it reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routing.selection import select
from routing.strategies.smoothing import PRIOR_STRENGTH_GRID, log_marginal_likelihood

# The weight, in answers, of the prior of an estimate without own counts, and what the evidence behind
# an estimate is topped up by: two, the weight of the uniform Beta(1, 1), so that an LLM with no
# answers near x is drawn over [0, 1] around its estimate.
PRIOR_COUNT = 2.0
# A Beta needs both parameters positive: an estimate of exactly 0 or 1 is drawn as if just inside.
MEAN_BOUND = 1e-3


@dataclass(frozen=True)
class OwnCounts:
    """Per prompt and LLM (arrays broadcast to the losses' shape): the LLM's own answers in the finest
    cell near the prompt, the error weight among them, and its empirical-Bayes prior strength."""

    answers: np.ndarray
    errors: np.ndarray
    strength: np.ndarray

    def rows(self, which: np.ndarray, shape: tuple) -> OwnCounts:
        """The same counts for the rows ``which`` of losses shaped ``shape``."""
        return OwnCounts(*(np.broadcast_to(np.asarray(a, dtype=np.float64), shape)[which] for a in self))

    def __iter__(self):
        return iter((self.answers, self.errors, self.strength))


def own_prior_weight(answers: np.ndarray, errors: np.ndarray) -> float:
    """â(h): the strength of ``smoothing.py``'s grid under which one LLM's own counts per cell (answers
    n_k and error weight s_k, [C], e.g. ``RoutingStrategy.fine_cells``) are most likely (beta-binomial,
    prior mean its overall error Σs / Σn). Small when its cells differ from its overall error (a
    specialist's), large when they do not (a generalist's); NaN without any answer."""
    answers, errors = np.asarray(answers, dtype=np.float64), np.asarray(errors, dtype=np.float64)
    if not answers.sum() > 0:
        return float("nan")
    likelihood = log_marginal_likelihood(np.stack([answers, errors]), errors.sum() / answers.sum(), PRIOR_STRENGTH_GRID)
    return float(PRIOR_STRENGTH_GRID[int(np.argmax(likelihood))])


def own_strength(strategy, evidence: np.ndarray, error_evidence: np.ndarray) -> float:
    """â(h) of one LLM from its ``RoutingStrategy.evidence`` and ``error_evidence`` vectors, read on the
    cells of its ``evidence_level`` (``fine_cells``); NaN when its error evidence is not stored (NaN
    entries)."""
    if not np.isfinite(error_evidence).all():
        return float("nan")
    level = strategy.evidence_level(evidence)
    return own_prior_weight(strategy.fine_cells(evidence, level), strategy.fine_cells(error_evidence, level))


def own_counts_at(
    strategy, prompt_embeddings: np.ndarray, evidence: np.ndarray, error_evidence: np.ndarray, strengths: np.ndarray
) -> OwnCounts:
    """Per prompt [n_prompts, n_llms]: each LLM's own answers and errors in the finest cell near it that
    its answers can speak for (``fine_evidence_at`` of the stacked evidence vectors [n_llms, C], each
    LLM's errors read at the level of its answers), and its strength ``strengths`` [n_llms]
    (``own_strength``)."""
    levels = strategy.evidence_levels(evidence)
    answers = strategy.fine_evidence_at(prompt_embeddings, evidence, levels)
    errors = strategy.fine_evidence_at(prompt_embeddings, error_evidence, levels)
    return OwnCounts(answers=answers, errors=errors, strength=np.broadcast_to(strengths, answers.shape))


def posterior_draw(
    losses: np.ndarray, evidence: np.ndarray, rng: np.random.Generator, *, own: OwnCounts | None = None
) -> np.ndarray:
    """One draw per entry of the posterior of the module docstring: γ = ``losses``, n(x, h) =
    ``evidence`` and the LLM's own counts ``own`` (where None or NaN, the draw centred on γ).

    An infinite or NaN evidence (nothing known about how certain the estimate is) keeps the estimate
    itself: such an LLM is never explored, only chosen when it is the best choice anyway. NaN losses
    stay NaN (the selector never picks them)."""
    losses = np.asarray(losses, dtype=np.float64)
    evidence = np.broadcast_to(np.asarray(evidence, dtype=np.float64), losses.shape)
    known = np.isfinite(evidence)
    behind = np.where(known, np.maximum(evidence, 0.0), 0.0) + PRIOR_COUNT
    mean = np.clip(np.nan_to_num(losses, nan=0.5), MEAN_BOUND, 1 - MEAN_BOUND)
    wrong, right = mean * behind, (1 - mean) * behind
    if own is not None:
        answers, errors, strength = (np.broadcast_to(np.asarray(a, dtype=np.float64), losses.shape) for a in own)
        counted = np.isfinite(answers) & np.isfinite(errors) & np.isfinite(strength)
        answers = np.where(counted, np.maximum(answers, 0.0), 0.0)
        errors = np.clip(np.where(counted, errors, 0.0), 0.0, answers)
        weight = np.minimum(
            np.where(counted, np.maximum(strength, 0.0), 0.0), np.maximum(behind - answers, PRIOR_COUNT)
        )
        # A cell without answers under a prior of (near) zero weight would be a degenerate Beta.
        weight = np.maximum(weight, MEAN_BOUND)
        wrong = np.where(counted, errors + weight * mean, wrong)
        right = np.where(counted, answers - errors + weight * (1 - mean), right)
    drawn = rng.beta(wrong, right)
    return np.where(known & ~np.isnan(losses), drawn, losses)


def exploring_rows(n_prompts: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean [n_prompts]: which requests explore, each with probability ``share`` (0: none, 1: all)."""
    if not (np.isfinite(share) and 0.0 <= share <= 1.0):
        raise ValueError(f"the exploration share must lie in [0, 1], got {share}")
    if share == 0.0:
        return np.zeros(n_prompts, dtype=bool)
    return rng.random(n_prompts) < share


def explored_losses(
    losses: np.ndarray,
    evidence: np.ndarray,
    *,
    share: float,
    rng: np.random.Generator,
    own: OwnCounts | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(losses to route on [n, m], which rows explore [n]): rows that explore hold a posterior draw
    (``posterior_draw``), the others the estimates unchanged."""
    losses = np.atleast_2d(np.asarray(losses, dtype=np.float64))
    explores = exploring_rows(len(losses), share, rng)
    routed = losses.copy()
    if explores.any():
        evidence = np.broadcast_to(np.asarray(evidence, dtype=np.float64), losses.shape)
        own_rows = None if own is None else own.rows(explores, losses.shape)
        routed[explores] = posterior_draw(losses[explores], evidence[explores], rng, own=own_rows)
    return routed, explores


@dataclass(frozen=True)
class ExploredChoice:
    """Per prompt: the LLM chosen, the one the estimates alone would choose, whether they differ, and
    whether the prompt was routed on a draw at all."""

    choice: np.ndarray  # [n] index of the chosen LLM
    exploiting: np.ndarray  # [n] index of the LLM argmin of the estimates would choose
    explored: np.ndarray  # [n] bool: the draw changed the choice
    drawn: np.ndarray  # [n] bool: the prompt was among the share routed on a draw


def select_exploring(
    losses: np.ndarray,
    evidence: np.ndarray,
    costs: np.ndarray,
    *,
    share: float,
    rng: np.random.Generator,
    own: OwnCounts | None = None,
    lam: float = 0.0,
    allowed_mask=None,
    max_cost=None,
    quality_target: float | None = None,
) -> ExploredChoice:
    """``selection.select`` on Thompson-drawn losses for a ``share`` of the prompts (module docstring).

    Both choices go through the same filters: every choice is an allowed candidate within
    ``max_cost``, whatever was drawn."""
    routed, drawn = explored_losses(losses, evidence, share=share, rng=rng, own=own)
    filters = dict(lam=lam, allowed_mask=allowed_mask, max_cost=max_cost, quality_target=quality_target)
    choice = select(routed, costs, **filters)
    exploiting = select(losses, costs, **filters)
    return ExploredChoice(choice=choice, exploiting=exploiting, explored=choice != exploiting, drawn=drawn)
