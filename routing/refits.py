"""Refitting the routing state from the current data (the nightly job and the admin action).

The fit and the switch are ``services.routing_state_fit``: the new state, its centroids (pgvector
rows) and the profiles of every LLM are written and activated in one transaction, so a web process
sees the old state or the new one, never a state without its profiles.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import Count, Q

from registry.models import LLM, PromptSet
from routing import services
from routing.models import LLMProfile, RoutingState

Say = Callable[[str], None]


def routing_state_refit(
    *,
    prompt_set: PromptSet | None = None,
    strategy: str | None = None,
    params: dict | None = None,
    say: Say = lambda _: None,
) -> tuple[RoutingState, list[str]]:
    """Fit a new version of the active state (same prompt set and strategy unless given).

    Hyper-parameters are tuned again on the current data, holding fixed those given (``params``) or,
    by default, those the active state held fixed; a state fitted without tuning is refitted with
    its hyper-parameters as they were. Returns the new, active state and the names of the LLMs
    re-profiled after the switch.
    """
    active = RoutingState.objects.filter(is_active=True).select_related("prompt_set").first()
    if active is None and prompt_set is None:
        raise services.RoutingError("there is no active routing state to refit: name a prompt set (and a strategy)")
    prompt_set = prompt_set or active.prompt_set
    strategy = strategy or (active.strategy if active else services.DEFAULT_STRATEGY)
    tune = True
    if params is None:
        same = active is not None and active.strategy == strategy
        params = services.fixed_params_of(active) if same else {}
        tune = not same or services.tuning_of(active) is not None
    state = services.routing_state_fit(prompt_set=prompt_set, strategy=strategy, params=params, tune=tune, activate=True, say=say)
    return state, routing_state_profiles_reconcile(state=state)


def routing_state_profiles_reconcile(*, state: RoutingState) -> list[str]:
    """Profile again every active LLM whose validation outcomes changed while ``state`` was fitted.

    A profiling job that finished during a refit wrote its Ψ on the state active at that moment —
    the old one — and the refit read the LLM's outcomes before the last of them were written.
    Running this after the switch closes that gap without a lock between the two jobs.
    """
    prompt_ids = list(state.validation_prompt_ids)
    counts = dict(
        LLM.objects.filter(is_active=True)
        .annotate(n=Count("outcomes", filter=Q(outcomes__prompt_id__in=prompt_ids)))
        .filter(n__gt=0)
        .values_list("id", "n")
    )
    profiled = dict(LLMProfile.objects.filter(state=state).values_list("llm_id", "n_validation_outcomes"))
    stale = LLM.objects.filter(id__in=[llm_id for llm_id, n in counts.items() if profiled.get(llm_id) != n]).order_by("name")
    for llm in stale:
        services.llm_profile(llm=llm, state=state)
    return [llm.name for llm in stale]
