"""The active router on its data set's held-out prompts: deferral curves, single LLMs, operating points.

The held-out prompts are the test split of the prompt set the routing state was fitted on: neither
the fit (train) nor the profiles (validation) saw them. The curve is the exact λ-sweep of
``routing.strategies.curves`` with true correctness, in USD per query (each LLM's price at the prompts'
mean length). Computing it loads embeddings and outcomes, so it is kept per process and state
revision; a refit or a new profile makes the next page view compute it again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.conf import settings

from registry.models import Prompt, PromptSet
from registry.selectors import outcome_matrix, prompt_embeddings
from registry.tokens import count_tokens
from routing.caches import process_cache
from routing.selection import select
from routing.selectors.routers import LoadedRouter
from routing.strategies.curves import DeferralCurve, deferral_curve, qnc

# An even sample of at most this many held-out prompts: enough for curves that are stable to the
# third decimal, and bounded work (embeddings + outcomes) on the first view after a refit.
MAX_HELD_OUT_PROMPTS = 3000
# An LLM enters the curves if it answered at least this share of the held-out prompts; the curves
# use the prompts every such LLM answered (LLMs profiled through their API answered validation only).
MIN_COVERAGE = 0.9

_held_out = process_cache("dashboard held-out curves", max_entries=4)


@dataclass(frozen=True)
class HeldOut:
    state_id: int
    prompt_count: int
    llm_names: tuple[str, ...]
    left_out: tuple[str, ...]  # routable LLMs without outcomes on (enough of) the held-out prompts
    losses: np.ndarray  # [prompts, llms] predicted by the state's strategy
    zero_losses: np.ndarray  # [llms] ZeroRouter: each LLM's validation error
    correctness: np.ndarray  # [prompts, llms]
    costs_usd: np.ndarray  # [llms] per query
    strategy: DeferralCurve  # cost in USD per query
    zero: DeferralCurve

    @property
    def accuracy(self) -> np.ndarray:
        return self.correctness.mean(axis=0)

    def best_llm(self) -> int:
        """Index of the most accurate LLM (the cheaper one on a tie)."""
        return int(np.lexsort((self.costs_usd, -self.accuracy))[0])

    def operating_point(self, lam: float) -> tuple[float, float]:
        """(mean USD per query, accuracy) of routing these prompts with cost weight ``lam``."""
        choice = select(self.losses, self.costs_usd, lam=max(float(lam), 0.0))
        rows = np.arange(len(choice))
        return float(self.costs_usd[choice].mean()), float(self.correctness[rows, choice].mean())

    def chosen_shares(self, lam: float) -> np.ndarray:
        """Share of the held-out prompts routed to each LLM with cost weight ``lam``."""
        choice = select(self.losses, self.costs_usd, lam=max(float(lam), 0.0))
        return np.bincount(choice, minlength=len(self.llm_names)) / max(len(choice), 1)

    def qnc(self) -> Qnc:
        """QNC: the cheapest mean cost at which the router's curve reaches the best single LLM's accuracy."""
        best = self.best_llm()
        accuracy = float(self.accuracy[best])
        reached = qnc(_normalised(self.strategy, self.costs_usd), accuracy) * float(self.costs_usd.max())
        return Qnc(
            best_llm=self.llm_names[best],
            best_accuracy=accuracy,
            best_cost_usd=float(self.costs_usd[best]),
            cost_usd=float(reached) if np.isfinite(reached) else None,
            router_best_accuracy=float(self.strategy.quality.max()),
        )


@dataclass(frozen=True)
class Qnc:
    best_llm: str
    best_accuracy: float
    best_cost_usd: float
    cost_usd: float | None  # None: the router never reaches the best LLM's accuracy on these prompts
    router_best_accuracy: float

    @property
    def share_of_cost(self) -> float | None:
        return None if self.cost_usd is None else self.cost_usd / self.best_cost_usd


def _normalised(curve: DeferralCurve, costs_usd: np.ndarray) -> DeferralCurve:
    return DeferralCurve(curve.cost / float(costs_usd.max()), curve.quality)


def held_out(router: LoadedRouter) -> HeldOut | None:
    """The router's held-out figures (cached per state revision); None without a test split with outcomes."""
    key = (router.state_id, router.revision, tuple(llm.id for llm in router.llms))
    cached = _held_out.get(key)
    if cached is None:
        cached = _compute(router)
        _held_out.set(key, cached)
    return cached


def _compute(router: LoadedRouter) -> HeldOut | None:
    prompt_ids = list(
        Prompt.objects.filter(prompt_set_id=router.prompt_set_id, split=Prompt.Split.TEST)
        .order_by("id")
        .values_list("id", flat=True)
    )
    if not prompt_ids or not router.llms:
        return None
    if len(prompt_ids) > MAX_HELD_OUT_PROMPTS:
        prompt_ids = [prompt_ids[i] for i in np.linspace(0, len(prompt_ids) - 1, MAX_HELD_OUT_PROMPTS).astype(int)]
    correctness = outcome_matrix(prompt_ids=prompt_ids, llm_ids=[llm.id for llm in router.llms])
    covered = (~np.isnan(correctness)).mean(axis=0) >= MIN_COVERAGE
    if covered.sum() < 2:
        return None
    complete = ~np.isnan(correctness[:, covered]).any(axis=1)
    if not complete.any():
        return None
    rows = np.flatnonzero(complete)
    chosen_ids = [prompt_ids[i] for i in rows]
    columns = np.flatnonzero(covered)
    losses = router.predict_loss(prompt_embeddings(prompt_ids=chosen_ids))[:, columns].astype(np.float64)
    costs = router.expected_costs(input_tokens=mean_prompt_tokens(router.prompt_set_id, chosen_ids))[columns]
    truth = correctness[np.ix_(rows, columns)].astype(np.float64)
    zero_losses = np.array([router.llms[j].validation_error for j in columns], dtype=np.float64)
    if costs.max() <= 0:
        return None
    return HeldOut(
        state_id=router.state_id,
        prompt_count=len(rows),
        llm_names=tuple(router.llms[j].name for j in columns),
        left_out=tuple(router.llms[j].name for j in np.flatnonzero(~covered)),
        losses=losses,
        zero_losses=zero_losses,
        correctness=truth,
        costs_usd=costs,
        strategy=_in_usd(deferral_curve(losses, costs, truth), costs),
        zero=_in_usd(deferral_curve(np.tile(zero_losses, (len(rows), 1)), costs, truth), costs),
    )


def _in_usd(curve: DeferralCurve, costs: np.ndarray) -> DeferralCurve:
    thinned = curve.thinned(300)
    return DeferralCurve(thinned.cost * float(costs.max()), thinned.quality)


def mean_prompt_tokens(prompt_set_id: int, prompt_ids: list[int]) -> float:
    """Mean prompt length in tokens (the import's figure when it recorded one)."""
    metadata = PromptSet.objects.filter(id=prompt_set_id).values_list("metadata", flat=True).first() or {}
    if metadata.get("mean_prompt_tokens"):
        return float(metadata["mean_prompt_tokens"])
    texts = Prompt.objects.filter(id__in=prompt_ids[:500]).values_list("text", flat=True)
    return float(np.mean(count_tokens(list(texts)))) if prompt_ids else float(settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS)
