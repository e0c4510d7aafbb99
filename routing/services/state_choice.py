"""Fitting several strategies on one data set and activating the best (services).

Every strategy is tuned by the same cross-validation over the training LLMs
(``routing.strategies.tuning``: same seed, so the same folds of LLMs and the same prompts), which
makes their best cross-validated scores comparable: the universal strategy with the highest one is
activated. Non-universal strategies (``routoo_predictor``) are fitted, so a request can name them,
but never activated by this choice: the active router must route new LLMs.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.models import PromptSet
from routing.exceptions import RoutingError
from routing.models import RoutingState
from routing.services import state as services
from routing.strategies import STRATEGIES
from routing.strategies.tuning import auto_choice

AUTO = "auto"


@dataclass(frozen=True)
class FittedChoice:
    state: RoutingState
    score: float | None  # cross-validated score (None: could not be tuned)
    universal: bool


def routing_states_fit_and_choose(
    *,
    prompt_set: PromptSet,
    strategies: list[str] | None = None,
    activate_best: bool = True,
    tuning_budget: str = "full",
    compare_existing: bool = False,
    refit: bool = False,
    say: services.Say = lambda _: None,
) -> tuple[list[FittedChoice], RoutingState | None]:
    """Fit (tuned) every strategy in ``strategies`` (default: all) that has no state on ``prompt_set`` yet.

    Returns every state fitted here with its score, and the state activated (None when
    ``activate_best`` is off or no fitted universal strategy has a score). With ``compare_existing``
    the choice also weighs the latest state of every other universal strategy already fitted on
    ``prompt_set`` (by its stored score), and nothing is activated unless a strategy was fitted here.
    With ``refit`` a strategy already fitted on ``prompt_set`` is fitted again.
    """
    names = list(strategies or STRATEGIES)
    unknown = [name for name in names if name not in STRATEGIES]
    if unknown:
        raise RoutingError(f"unknown strategies: {', '.join(unknown)}; choose from {', '.join(sorted(STRATEGIES))}")
    fitted = []
    for name in names:
        if not refit and RoutingState.objects.filter(prompt_set=prompt_set, strategy=name).exists():
            say(f"{name}: already fitted on {prompt_set.name}, kept")
            continue
        state = services.routing_state_fit(
            prompt_set=prompt_set,
            strategy=name,
            activate=False,
            # a cross-validated score is only needed to compare universal strategies (the others are
            # never activated): routoo_predictor's would cost three more fits of it for nothing
            score_single=STRATEGIES[name].universal,
            tuning_budget=tuning_budget,
            say=say,
        )
        tuning = services.tuning_of(state) or {}
        fitted.append(FittedChoice(state, tuning.get("score"), STRATEGIES[name].universal))
    candidates = [choice for choice in fitted if choice.universal and choice.score is not None]
    if compare_existing:
        if not fitted:
            return fitted, None  # nothing new: whatever is active stays so
        candidates += _earlier_choices(prompt_set, exclude=[choice.state.id for choice in fitted])
    if not activate_best or not candidates:
        return fitted, None
    best = _best(candidates)
    services.routing_state_activate(state=best.state)
    return fitted, best.state


def routing_state_fit_auto(
    *, prompt_set: PromptSet, activate: bool = True, say: services.Say = lambda _: None
) -> tuple[list[FittedChoice], RoutingState]:
    """``fit_router --strategy auto``: fit every universal strategy on ``prompt_set`` (tuned, full budget;
    fitted again if fitted before) and pick the one ``evaluate``'s ``auto`` would: the best
    cross-validated score. Returns every state fitted, with its score, and the winner (activated
    unless ``activate`` is off)."""
    universal = [name for name, strategy in STRATEGIES.items() if strategy.universal]
    fitted, _ = routing_states_fit_and_choose(
        prompt_set=prompt_set, strategies=universal, activate_best=False, refit=True, say=say
    )
    candidates = [choice for choice in fitted if choice.score is not None]
    if not candidates:
        raise RoutingError(
            f"auto needs cross-validated scores, and none could be computed on {prompt_set.name!r} "
            "(too few training LLMs or train prompts): fit a strategy by name"
        )
    best = _best(candidates)
    if activate:
        services.routing_state_activate(state=best.state)
    return fitted, best.state


def _best(choices: list[FittedChoice]) -> FittedChoice:
    by_id = {str(choice.state.id): choice for choice in choices}
    return by_id[auto_choice({key: choice.score for key, choice in by_id.items()})]


def _earlier_choices(prompt_set: PromptSet, *, exclude: list[int]) -> list[FittedChoice]:
    """The latest tuned state of each universal strategy on ``prompt_set``, with its stored score."""
    universal = [name for name, strategy in STRATEGIES.items() if strategy.universal]
    latest = (
        RoutingState.objects.filter(prompt_set=prompt_set, strategy__in=universal)
        .exclude(id__in=exclude)
        .order_by("strategy", "-version")
        .distinct("strategy")
    )
    choices = [FittedChoice(state, (services.tuning_of(state) or {}).get("score"), True) for state in latest]
    return [choice for choice in choices if choice.score is not None]
