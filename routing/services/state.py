"""Writes of routing states: fit, activate, refit, and profile an LLM on a fitted state.

A fit and its switch happen in one transaction: the new state, its centroids (pgvector rows) and
the profiles of every LLM are written and activated together, so a web process sees the old state
or the new one, never a state without its profiles.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from registry.embedders import get_embedder
from registry.models import LLM, Prompt, PromptSet
from routing.exceptions import RoutingError
from routing.models import EvidenceApplication, LLMProfile, RoutingState, StateCentroid
from routing.selectors import evidence as evidence_selectors
from routing.selectors import state as selectors
from routing.selectors.evidence import LLMEvidence
from routing.strategies import STRATEGIES, get_strategy
from routing.strategies.base import RoutingStrategy
from routing.strategies.evidence import with_evidence
from routing.strategies.serialization import split_state
from routing.strategies.tuning import Tuning, tuned_fit

Say = Callable[[str], None]
DEFAULT_STRATEGY = "uniroute_kmeans"


def routing_state_fit(
    *,
    prompt_set: PromptSet,
    strategy: str = DEFAULT_STRATEGY,
    params: dict | None = None,
    train_llms: list[LLM] | None = None,
    activate: bool = True,
    tune: bool = True,
    score_single: bool = False,
    tuning_budget: str = "full",
    validation_set: PromptSet | None = None,
    say: Say = lambda _: None,
) -> RoutingState:
    """Fit ``strategy`` on the set's train split, profile every LLM with validation outcomes, store it.

    ``validation_set``: profile the LLMs on that set's validation prompts instead (one built from a
    tenant's traffic and graded by a judge, ``services/validation_sets.py``). The strategy is fitted
    and tuned on the data set as always — its clusters come from the train split — and each LLM's Ψ
    from its outcomes on ``validation_set``: only LLMs with such outcomes are routable on the state.

    With ``tune`` (the default) the hyper-parameters not given in ``params`` are chosen by
    cross-validation over the training LLMs (``routing.strategies.tuning``); the state's ``params``
    are then all the values the strategy was built with, and ``state["tuning"]`` the tuner's report.
    Training LLMs default to every active LLM with outcomes on the train split; every active LLM
    with validation outcomes gets a profile (an LLM seen only on validation is routable too).
    """
    if strategy not in STRATEGIES:
        raise RoutingError(f"unknown strategy {strategy!r}; choose one of {', '.join(sorted(STRATEGIES))}")
    params = dict(params or {})
    train_llms = train_llms or selectors.llms_with_outcomes_on(prompt_set=prompt_set, split=Prompt.Split.TRAIN)
    if not train_llms:
        raise RoutingError(f"no active LLM has outcomes on the train split of {prompt_set.name!r}")
    llm_ids = [llm.id for llm in train_llms]
    say(f"Loading {prompt_set.name}: train and validation splits for {len(train_llms)} training LLMs ...")
    train = selectors.split_data(prompt_set=prompt_set, split=Prompt.Split.TRAIN, llm_ids=llm_ids)
    validation = selectors.split_data(prompt_set=prompt_set, split=Prompt.Split.VALIDATION, llm_ids=llm_ids)
    if not train.prompt_ids or not validation.prompt_ids:
        raise RoutingError(f"{prompt_set.name!r} needs prompts in both the train and validation splits")
    say(
        f"Fitting {strategy} on {len(train.prompt_ids):,} train prompts ({len(validation.prompt_ids):,} validation)"
        + (", tuning its hyper-parameters on the training LLMs' outcomes ..." if tune else " ...")
    )
    started = time.monotonic()
    data = (train.embeddings, train.correctness)
    options = dict(
        validation_embeddings=validation.embeddings,
        validation_correctness=validation.correctness,
        llm_keys=[llm.name for llm in train_llms],
    )
    try:
        get_strategy(strategy, **params)
    except ValueError as exc:
        raise RoutingError(str(exc)) from None
    profiling = validation
    if validation_set is not None:
        profiling = _validation_set_data(validation_set=validation_set, strategy=strategy)
    tuning: Tuning | None = None
    if tune:
        fitted, tuning = tuned_fit(
            strategy,
            *data,
            **options,
            costs=training_costs(prompt_set=prompt_set, llms=train_llms),
            fixed=params,
            score_single=score_single,
            budget=tuning_budget,
        )
        _say_tuning(say, tuning)
    else:
        fitted = get_strategy(strategy, **params).fit(*data, **options)
    fit_seconds = time.monotonic() - started
    sampled = tuning is not None and tuning.final_fit_prompts not in (None, len(train.prompt_ids))
    say(
        f"  fitted in {fit_seconds:.1f} s"
        + (f" (tuning {tuning.seconds:.1f} s)" if tuning else "")
        + (f"; final fit on a sample of {tuning.final_fit_prompts:,} train prompts" if sampled else "")
    )
    small, blob = split_state(fitted.get_state())
    small["tuning"] = tuning.as_json() if tuning else None
    params = {name: small[name] for name in fitted.param_names() if name in small}

    with transaction.atomic():
        last = RoutingState.objects.select_for_update().order_by("-version").first()
        state = RoutingState.objects.create(
            strategy=strategy,
            version=(last.version + 1) if last else 1,
            params=params,
            state=small,
            arrays=blob,
            prompt_set=prompt_set,
            embedder=get_embedder().name,
            n_train_prompts=tuning.final_fit_prompts if sampled else len(train.prompt_ids),
            n_validation_prompts=len(profiling.prompt_ids),
            validation_prompt_ids=profiling.prompt_ids,
            validation_set=validation_set,
            fit_seconds=fit_seconds,
        )
        state.train_llms.set(train_llms)
        _store_centroids(state, fitted, train.embeddings)
        profiled = selectors.llms_with_outcomes_on(
            prompt_set=validation_set or prompt_set, split=Prompt.Split.VALIDATION
        )
        for llm in profiled:
            _store_profile(state=state, strategy=fitted, llm=llm, validation_embeddings=profiling.embeddings)
        say(
            f"  profiled {len(profiled)} LLMs on the validation "
            + (f"set {validation_set.name} ({len(profiling.prompt_ids):,} prompts)" if validation_set else "split")
        )
        if activate:
            routing_state_activate(state=state)
    say(f"Routing state v{state.version} ({strategy}) {'is active' if activate else 'stored, not active'}")
    return state


def _validation_set_data(*, validation_set: PromptSet, strategy: str) -> selectors.SplitData:
    # A strategy that stores its fit's validation embeddings (K-NN) profiles only on those prompts.
    if "validation_embeddings_" in getattr(STRATEGIES[strategy], "learned_attributes", ()):
        raise RoutingError(
            f"{strategy} keeps the validation prompts it was fitted with in its state: profile on "
            f"{validation_set.name!r} with a strategy with clusters (uniroute_kmeans, uniroute_learnedmap)"
        )
    data = selectors.split_data(prompt_set=validation_set, split=Prompt.Split.VALIDATION, llm_ids=[])
    if not data.prompt_ids:
        raise RoutingError(f"{validation_set.name!r} has no validation prompts")
    if not selectors.llms_with_outcomes_on(prompt_set=validation_set, split=Prompt.Split.VALIDATION):
        raise RoutingError(f"no active LLM has outcomes on {validation_set.name!r}: profile the LLMs on it first")
    return data


def training_costs(*, prompt_set: PromptSet, llms: list[LLM]) -> np.ndarray | None:
    """Each training LLM's price per query on this set (as ``evaluate --cost price``); None if any has no price."""
    costs = [
        llm.expected_cost_usd(
            input_tokens=prompt_set.metadata.get("mean_prompt_tokens", 0.0),
            output_tokens=settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS,
        )
        for llm in llms
    ]
    return None if any(c is None for c in costs) else np.asarray(costs, dtype=np.float64)


def _say_tuning(say: Say, tuning: Tuning) -> None:
    if tuning.score is None:
        say(f"  {tuning.note}: {tuning.params or 'defaults'}")
        return
    say(
        f"  tuned in {tuning.seconds:.1f} s: {len(tuning.candidates)} candidates × {tuning.folds} folds of training LLMs, "
        f"{tuning.fit_prompts:,} prompts to fit on, {tuning.score_prompts:,} to score on ({tuning.criterion}; {tuning.budget} budget)"
    )
    compared = (
        f" on {tuning.comparison_folds} fresh folds (best of the grid on its own folds {tuning.selection_score:.4f})"
        if tuning.comparison_folds
        else ""
    )
    say(f"  chosen: {tuning.chosen or 'nothing to choose'}; cross-validated score {tuning.score:.4f}{compared}")


def params_of(state: RoutingState) -> dict:
    """The state's hyper-parameters in the order of the strategy's constructor (the database keeps no order)."""
    names = STRATEGIES[state.strategy].param_names() if state.strategy in STRATEGIES else []
    return {**{name: state.params[name] for name in names if name in state.params}, **state.params}


def tuning_of(state: RoutingState) -> dict | None:
    """The tuner's report stored with a state (None: fitted with hyper-parameters as given)."""
    return (state.state or {}).get("tuning")


def fixed_params_of(state: RoutingState) -> dict:
    """What a refit holds fixed: the hyper-parameters given when the state was tuned, or all of an untuned state's."""
    tuning = tuning_of(state)
    return dict(tuning["fixed"]) if tuning else dict(state.params)


def _store_centroids(state: RoutingState, strategy: RoutingStrategy, train_embeddings: np.ndarray) -> None:
    centroids = strategy.centroids()
    if centroids is None:
        return
    cluster = strategy.cluster_of(train_embeddings)
    sizes = np.bincount(cluster, minlength=len(centroids)) if cluster is not None else np.zeros(len(centroids), int)
    StateCentroid.objects.bulk_create(
        StateCentroid(state=state, index=i, vector=np.asarray(c, dtype=np.float32), n_train_prompts=int(sizes[i]))
        for i, c in enumerate(centroids)
    )


def _store_profile(
    *,
    state: RoutingState,
    strategy: RoutingStrategy,
    llm: LLM,
    validation_embeddings: np.ndarray,
    reason: str = EvidenceApplication.Reason.PROFILE,
) -> LLMProfile:
    """Ψ(llm) on ``state`` from its validation answers followed by its evidence rows (each weighted by the
    bounded rule, ``selectors/evidence.py``); a profile that read evidence is recorded as an application."""
    correctness = selectors.validation_correctness_of(llm=llm, prompt_ids=list(state.validation_prompt_ids))
    answered = ~np.isnan(correctness)
    if not answered.any():
        raise RoutingError(
            f"{llm.name} has no outcome on the {len(correctness):,} validation prompts of {(state.validation_set or state.prompt_set).name!r}"
        )
    evidence = None
    if evidence_selectors.evidence_enabled() and strategy.takes_sample_weight:
        evidence = evidence_selectors.evidence_of(llm_id=llm.id, state=state)
    rows = (validation_embeddings, correctness, None)
    if evidence is not None and evidence.events:
        rows = with_evidence(
            validation_embeddings, correctness, evidence.embeddings, evidence.correctness, evidence.weight
        )
    vector = strategy.profile(rows[0], rows[1], llm_key=llm.name, sample_weight=rows[2])
    previous = LLMProfile.objects.filter(state=state, llm=llm).values_list("vector", flat=True).first()
    profile, _ = LLMProfile.objects.update_or_create(
        state=state,
        llm=llm,
        defaults={
            "vector": [float(x) for x in np.asarray(vector, dtype=np.float64)],
            "n_validation_outcomes": int(answered.sum()),
            "validation_error": float(1.0 - np.nanmean(correctness)),
            "smoothing": strategy.profile_choice(rows[0], rows[1], sample_weight=rows[2]) or {},
            "evidence": [float(x) for x in strategy.evidence(rows[0], rows[1], sample_weight=rows[2])],
            "error_evidence": [float(x) for x in strategy.error_evidence(rows[0], rows[1], sample_weight=rows[2])],
        },
    )
    if evidence is not None and (
        evidence.seen or EvidenceApplication.objects.filter(state=state, llm=llm, events__gt=0).exists()
    ):
        if previous is None:  # a new state: what moved is measured against its profile without evidence
            previous = strategy.profile(validation_embeddings, correctness, llm_key=llm.name)
        _record_application(
            state=state,
            strategy=strategy,
            llm=llm,
            evidence=evidence,
            before=np.asarray(previous, dtype=np.float64),
            after=np.asarray(vector, dtype=np.float64),
            reason=reason,
        )
    return profile


# The audit keeps the estimate before and after at this many of the newest events.
AUDITED_EVENTS = 10


def _record_application(
    *,
    state: RoutingState,
    strategy: RoutingStrategy,
    llm: LLM,
    evidence: LLMEvidence,
    before: np.ndarray,
    after: np.ndarray,
    reason: str,
) -> EvidenceApplication:
    """The audit row of one profile computed with evidence: who gave it, how much it weighed, and the LLM's
    estimated error on the evidence prompts (and at the newest of them, in their clusters) before and after."""
    error_before = error_after = None
    moved = []
    if evidence.events:
        losses = strategy.predict_loss(evidence.embeddings, np.stack([before, after]))  # [events, 2]
        error_before, error_after = (float(x) for x in losses.mean(axis=0))
        newest = evidence.evidence_ids[:AUDITED_EVENTS]
        details = evidence_selectors.evidence_details(evidence_ids=newest)
        clusters = strategy.cluster_of(evidence.embeddings[: len(newest)])
        for i, evidence_id in enumerate(newest):
            detail = details[evidence_id]
            moved.append(
                {
                    "evidence": evidence_id,
                    "prompt": detail["prompt_id"],
                    "cluster": None if clusters is None else int(clusters[i]),
                    "source": detail["source"],
                    "tenant": detail["tenant__name"],
                    "score": detail["score"],
                    "weight": round(float(evidence.weight[i]), 4),
                    "before": round(float(losses[i, 0]), 4),
                    "after": round(float(losses[i, 1]), 4),
                }
            )
    same_shape = before.shape == after.shape
    return EvidenceApplication.objects.create(
        state=state,
        llm=llm,
        reason=reason,
        events=evidence.events,
        weight=float(evidence.weight.sum()),
        sources=evidence.sources,
        error_before=error_before,
        error_after=error_after,
        largest_change=float(np.max(np.abs(after - before), initial=0.0)) if same_shape else 0.0,
        moved=moved,
        evidence_seen=evidence.seen,
        newest_evidence_at=evidence.newest_at,
    )


def routing_state_activate(*, state: RoutingState) -> None:
    """Make ``state`` the active one in one transaction: readers see the old state or the new, never neither."""
    with transaction.atomic():
        RoutingState.objects.select_for_update().filter(is_active=True).exclude(id=state.id).update(is_active=False)
        RoutingState.objects.filter(id=state.id).update(
            is_active=True, activated_at=timezone.now(), revision=F("revision") + 1
        )
    state.refresh_from_db()


def llm_profile(
    *, llm: LLM, state: RoutingState | None = None, reason: str = EvidenceApplication.Reason.PROFILE
) -> LLMProfile:
    """Profile ``llm`` for a routing state (default: the active one) from its validation outcomes and its
    evidence (``selectors/evidence.py``).

    No refit: the strategy is loaded frozen and only Ψ(llm) is computed (UniRoute's promise).
    Bumping the state's revision makes every process pick the new profile up.
    """
    state = state or selectors.routing_state_active()
    strategy = selectors.strategy_of(state)
    embeddings = selectors.prompt_embeddings(prompt_ids=list(state.validation_prompt_ids))
    with transaction.atomic():
        profile = _store_profile(
            state=state, strategy=strategy, llm=llm, validation_embeddings=embeddings, reason=reason
        )
        RoutingState.objects.filter(id=state.id).update(revision=F("revision") + 1)
    return profile


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
    its hyper-parameters as they were. A state profiled on a validation set of its own keeps it. Returns the new, active state and the names of the LLMs
    re-profiled after the switch.
    """
    active = RoutingState.objects.filter(is_active=True).select_related("prompt_set", "validation_set").first()
    if active is None and prompt_set is None:
        raise RoutingError("there is no active routing state to refit: name a prompt set (and a strategy)")
    prompt_set = prompt_set or active.prompt_set
    strategy = strategy or (active.strategy if active else DEFAULT_STRATEGY)
    tune = True
    if params is None:
        same = active is not None and active.strategy == strategy
        params = fixed_params_of(active) if same else {}
        tune = not same or tuning_of(active) is not None
    # A state profiled on a traffic-built validation set stays so: a refit must not drop the LLMs'
    # judged profiles for the data set's own validation split.
    validation_set = active.validation_set if active is not None and active.prompt_set_id == prompt_set.id else None
    state = routing_state_fit(
        prompt_set=prompt_set,
        strategy=strategy,
        params=params,
        tune=tune,
        activate=True,
        validation_set=validation_set,
        say=say,
    )
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
    stale = LLM.objects.filter(id__in=[llm_id for llm_id, n in counts.items() if profiled.get(llm_id) != n]).order_by(
        "name"
    )
    for llm in stale:
        llm_profile(llm=llm, state=state)
    return [llm.name for llm in stale]
