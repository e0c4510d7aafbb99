"""Reads of routing states: the active state, its fitted strategy, and the arrays a fit or a profile needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import Count, Q

from registry.models import LLM, Prompt, PromptSet
from registry.selectors import outcome_matrix, prompt_embeddings
from routing.exceptions import NoActiveRoutingState
from routing.models import RoutingState
from routing.strategies import STRATEGIES
from routing.strategies.base import RoutingStrategy
from routing.strategies.serialization import join_state


def routing_state_active() -> RoutingState:
    state = RoutingState.objects.filter(is_active=True).select_related("prompt_set", "validation_set").first()
    if state is None:
        raise NoActiveRoutingState(
            "no routing state has been fitted yet: run `python manage.py fit_router --dataset NAME`"
        )
    return state


def strategy_of(state: RoutingState) -> RoutingStrategy:
    """The state's fitted strategy, rebuilt from its stored hyper-parameters and arrays."""
    return STRATEGIES[state.strategy].from_state(join_state(state.state, state.arrays))


@dataclass
class SplitData:
    prompt_ids: list[int]
    embeddings: np.ndarray  # [prompts, D]
    correctness: np.ndarray  # [prompts, llms], NaN = no outcome


def split_data(*, prompt_set: PromptSet, split: str, llm_ids: list[int]) -> SplitData:
    prompt_ids = list(
        Prompt.objects.filter(prompt_set=prompt_set, split=split).order_by("id").values_list("id", flat=True)
    )
    return SplitData(
        prompt_ids=prompt_ids,
        embeddings=prompt_embeddings(prompt_ids=prompt_ids),
        correctness=outcome_matrix(prompt_ids=prompt_ids, llm_ids=llm_ids),
    )


def llms_with_outcomes_on(*, prompt_set: PromptSet, split: str, min_outcomes: int = 1) -> list[LLM]:
    """Active LLMs with at least ``min_outcomes`` outcomes on the given split, by name."""
    return list(
        LLM.objects.filter(is_active=True)
        .annotate(n=Count("outcomes", filter=Q(outcomes__prompt__prompt_set=prompt_set, outcomes__prompt__split=split)))
        .filter(n__gte=min_outcomes)
        .order_by("name")
    )


def validation_correctness_of(*, llm: LLM, prompt_ids: list[int]) -> np.ndarray:
    """One LLM's scores on the given validation prompts (NaN where it has none)."""
    return outcome_matrix(prompt_ids=prompt_ids, llm_ids=[llm.id])[:, 0]
