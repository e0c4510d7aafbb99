"""Route requests and their feedback (services): the one place a routing decision is made.

``route_create`` embeds the prompt, predicts each LLM's loss with the active routing state,
chooses λ (explicit, quality target, the tenant's default or budget pacing), selects an LLM with the
pure selector (``routing.selection``), reserves its estimated cost in the tenant's budget and writes
the decision — reservation and decision in one transaction, so every accepted request leaves
exactly one decision and its cost is counted exactly once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from registry.models import LLM
from registry.tokens import count_tokens
from routing import budgets
from routing.budgets import BudgetStatus, ReferenceSample
from routing.embedding_cache import embed_cached
from routing.models import Decision, RoutingState, Tenant
from routing.prompt_text import routed_embedding
from routing.runtime import LoadedRouter, RoutableLLM, active_router
from routing.selection import NoCandidateError, select
from routing.tenants import tenant_allowed_llm_ids

Reason = Decision.LambdaReason
N_ALTERNATIVES = 5


class InvalidRouteRequest(ValueError):
    """A route request that cannot be served as asked; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class RouteRequest:
    text: str  # the request: what is embedded and routed on (stored with the decision)
    input_tokens: int  # what the chosen LLM will be sent (a whole chat, not only the routed turn)
    models: list[str] | None = None
    lam: float | None = None
    quality_target: float | None = None
    max_cost_usd: float | None = None
    strategy: str | None = None
    context: str = ""  # earlier turns and system prompts: they nudge the request's embedding (prompt_text.py)


@dataclass
class RouteResult:
    decision: Decision
    llm: RoutableLLM
    budget: BudgetStatus
    notes: list[str] = field(default_factory=list)
    embed_ms: float = 0.0
    route_ms: float = 0.0
    budget_ms: float = 0.0
    embedding_cached: bool = False
    strategy_params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Scoring:
    """One prompt scored by the router, with the request's constraints: what selection works on."""

    router: LoadedRouter
    losses: np.ndarray  # [llms] predicted loss
    costs: np.ndarray  # [llms] estimated USD
    allowed: np.ndarray  # [llms] tenant's and request's candidates
    max_cost: float | None  # per-request cap
    lam: float | None
    quality_target: float | None
    reason: str
    cluster: int | None

    def select(self, max_cost: float | None) -> int:
        return int(select(
            self.losses[None, :], self.costs, lam=self.lam or 0.0, allowed_mask=self.allowed,
            max_cost=max_cost, quality_target=self.quality_target,
        )[0])


def route_create(*, tenant: Tenant, api_key=None, request: RouteRequest) -> RouteResult:
    router = router_for(strategy=request.strategy)
    started = time.perf_counter()
    embedding, cached = embed_cached(request.text)
    if request.context:
        context_embedding, context_cached = embed_cached(request.context)
        embedding, cached = routed_embedding(embedding, context_embedding), cached and context_cached
    embedded = time.perf_counter()
    status = budgets.budget_status_current(tenant=tenant)
    scoring = _score(router, tenant=tenant, request=request, embedding=embedding, status=status)
    choice = scoring.select(scoring.max_cost)
    routed = time.perf_counter()
    decision, choice, status, notes = _reserve_and_record(scoring, choice, status, tenant=tenant, api_key=api_key, request=request)
    finished = time.perf_counter()
    if router.llms[choice].uses_fallback:
        # Routoo-style predictors only score the LLMs they were trained on; say when they could not.
        notes = [*notes, f"{router.strategy_name} has no predictor head for {router.llms[choice].name} (not a training LLM): "
                 f"its quality comes from the universal fallback ({getattr(router.strategy, 'fallback', 'universal')})."]
    return RouteResult(
        decision=decision, llm=router.llms[choice], budget=status, notes=notes,
        embed_ms=(embedded - started) * 1e3, route_ms=(routed - embedded) * 1e3, budget_ms=(finished - routed) * 1e3,
        embedding_cached=cached, strategy_params=router.params,
    )


def _score(router: LoadedRouter, *, tenant: Tenant, request: RouteRequest, embedding: np.ndarray, status: BudgetStatus) -> Scoring:
    costs = expected_costs(router, input_tokens=request.input_tokens)
    allowed = allowed_mask(router, tenant=tenant, models=request.models)
    max_cost = _first_set(request.max_cost_usd, tenant.default_max_cost_usd)
    if max_cost is not None and not (costs[allowed] <= max_cost).any():
        raise InvalidRouteRequest(
            "max_cost_usd",
            f"No allowed LLM costs at most {max_cost:g} USD for this prompt "
            f"(the cheapest would cost {costs[allowed].min():.8f} USD).",
        )
    lam, quality_target, reason = _lambda_and_target(tenant=tenant, request=request)
    if reason == Reason.BUDGET_PACING:
        lam = budgets.paced_lambda(
            tenant=tenant, status=status, reference_key=(router.state_id, router.revision),
            reference=lambda: reference_sample(router), allowed_mask=allowed,
        )
    return Scoring(
        router=router, losses=router.predict_loss(embedding)[0].astype(np.float64), costs=costs, allowed=allowed,
        max_cost=max_cost, lam=lam, quality_target=quality_target, reason=reason, cluster=router.cluster_of(embedding),
    )


def _reserve_and_record(scoring: Scoring, choice: int, status: BudgetStatus, **context) -> tuple[Decision, int, BudgetStatus, list[str]]:
    """Reserve the choice's cost and write the decision; when it no longer fits, choose again among
    the LLMs that fit what is left; when nothing fits, apply the tenant's "budget spent" policy.

    Optimistic first: one conditional UPDATE per attempt. A failure means other requests took budget
    meanwhile. The last attempt locks the period row before choosing, so it cannot lose the race:
    a request is refused only when nothing fits, never because of contention.
    """
    first_choice, cap = choice, scoring.max_cost
    attempts = settings.ROUTERHUB_RESERVATION_ATTEMPTS
    for attempt in range(attempts):
        with transaction.atomic():
            if attempt == attempts - 1:
                status = budgets.locked(status)
                fitting = _choose_within_budget(scoring, status)
                if fitting is None:
                    break
                choice, cap = fitting
            amount = budgets.usd(scoring.costs[choice])
            reserved = budgets.reserve(status=status, amount=amount)
            if reserved is not None:
                decision = _write_decision(scoring, choice, reserved, reserved=amount, cap=cap, **context)
                notes = [] if choice == first_choice else [
                    f"Only {reserved.remaining_usd + amount:.10f} USD of the budget was left: candidates were "
                    f"limited to LLMs that fit in it (first choice: {scoring.router.llms[first_choice].name})."
                ]
                return decision, choice, reserved, notes
        status = budgets.refreshed(status)
        fitting = _choose_within_budget(scoring, status)
        if fitting is None:
            break
        choice, cap = fitting
    return _route_when_spent(scoring, status, **context)


def _choose_within_budget(scoring: Scoring, status: BudgetStatus) -> tuple[int, float] | None:
    """The best choice whose cost fits both the request's cap and what is left of the budget, with
    that cap; None when no allowed LLM fits."""
    remaining = float(status.remaining_usd)
    cap = remaining if scoring.max_cost is None else min(scoring.max_cost, remaining)
    try:
        return scoring.select(cap), cap
    except NoCandidateError:
        return None


def _route_when_spent(scoring: Scoring, status: BudgetStatus, **context) -> tuple[Decision, int, BudgetStatus, list[str]]:
    """Nothing fits in what is left: the tenant's policy refuses (402) or picks the cheapest LLM."""
    tenant = context["tenant"]
    try:
        choice = budgets.when_spent_policy(tenant).fallback(costs=scoring.costs, allowed_mask=scoring.allowed, status=status)
    except budgets.BudgetExhausted:
        budgets.count_rejection(status=status)
        raise
    amount = budgets.usd(scoring.costs[choice])
    with transaction.atomic():
        status = budgets.add_overage(status=status, amount=amount)
        decision = _write_decision(scoring, choice, status, overage=amount, exhausted=True, **context)
    return decision, choice, status, ["The budget for this period is spent: routed to the cheapest allowed LLM."]


def _write_decision(
    scoring: Scoring, choice: int, status: BudgetStatus, *, tenant: Tenant, api_key, request: RouteRequest,
    reserved: Decimal = Decimal(0), overage: Decimal = Decimal(0), cap: float | None = None, exhausted: bool = False,
) -> Decision:
    router = scoring.router
    lam, quality_target, reason = (None, None, Reason.BUDGET_EXHAUSTED) if exhausted else (scoring.lam, scoring.quality_target, scoring.reason)
    return Decision.objects.create(
        tenant=tenant, api_key=api_key, routed_text=request.text, prompt_tokens=request.input_tokens,
        llm_id=router.llms[choice].id, state_id=router.state_id, state_version=router.version, strategy=router.strategy_name,
        cluster=scoring.cluster, lambda_used=lam, lambda_reason=reason,
        predicted_quality=float(1.0 - scoring.losses[choice]), estimated_cost_usd=budgets.usd(scoring.costs[choice]),
        budget_period_id=status.period_id, reserved_usd=reserved, overage_usd=overage,
        alternatives=ranked_alternatives(
            router, scoring.losses, scoring.costs, allowed=scoring.allowed, max_cost=cap, lam=lam,
            quality_target=quality_target, exclude=choice,
        ),
        request={
            key: value for key, value in {
                "models": request.models, "lambda": request.lam, "quality_target": request.quality_target,
                "max_cost_usd": request.max_cost_usd, "strategy": request.strategy,
            }.items() if value is not None
        },
    )


# --- λ and selection ------------------------------------------------------------------------------

def _first_set(*values):
    return next((v for v in values if v is not None), None)


def _lambda_and_target(*, tenant: Tenant, request: RouteRequest) -> tuple[float | None, float | None, str]:
    """λ / quality target in order of precedence: the request's, then the tenant's defaults, then pacing."""
    if request.lam is not None:
        return request.lam, None, Reason.EXPLICIT
    if request.quality_target is not None:
        return None, request.quality_target, Reason.QUALITY_TARGET
    if tenant.default_lambda is not None:
        return tenant.default_lambda, None, Reason.TENANT_DEFAULT
    if tenant.default_quality_target is not None:
        return None, tenant.default_quality_target, Reason.QUALITY_TARGET
    return 0.0, None, Reason.BUDGET_PACING


def ranked_alternatives(router: LoadedRouter, losses, costs, *, allowed, max_cost, lam, quality_target, exclude: int) -> list[dict]:
    """The next best candidates (allowed, within the cost cap), in the order the selector prefers them."""
    quality = 1.0 - losses
    if max_cost is not None:
        allowed = allowed & (costs <= max_cost)
    if quality_target is not None:
        # those that meet the target, cheapest first, then the rest by predicted quality
        keys = [(0, costs[i]) if quality[i] >= quality_target else (1, -quality[i]) for i in range(len(costs))]
    else:
        keys = [(0, losses[i] + (lam or 0.0) * costs[i]) for i in range(len(costs))]
    order = sorted((i for i in np.flatnonzero(allowed) if i != exclude), key=lambda i: keys[i])
    return [
        {"name": router.llms[i].name, "predicted_quality": round(float(quality[i]), 6), "estimated_cost_usd": float(budgets.usd(costs[i]))}
        for i in order[:N_ALTERNATIVES]
    ]


def expected_costs(router: LoadedRouter, *, input_tokens: float) -> np.ndarray:
    """Estimated USD per LLM: its price × (prompt tokens, expected output tokens), or its per-query price.

    An LLM without any price costs 0 here — it is free as far as routerhub can tell.
    """
    output_tokens = settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS
    return np.array([llm.expected_cost_usd(input_tokens=input_tokens, output_tokens=output_tokens) for llm in router.llms], dtype=np.float64)


def allowed_mask(router: LoadedRouter, *, tenant: Tenant, models: list[str] | None) -> np.ndarray:
    allowed_ids = tenant_allowed_llm_ids(tenant=tenant)
    mask = np.array([not allowed_ids or llm.id in allowed_ids for llm in router.llms], dtype=bool)
    if models:
        _check_model_names(router, tenant=tenant, models=models, tenant_mask=mask)
        wanted = set(models)
        mask &= np.array([llm.name in wanted for llm in router.llms], dtype=bool)
    if not mask.any():
        raise InvalidRouteRequest("models", f"Tenant {tenant.name!r} is not allowed any LLM the active router can route to.")
    return mask


def _check_model_names(router: LoadedRouter, *, tenant: Tenant, models: list[str], tenant_mask: np.ndarray) -> None:
    routable = {llm.name: i for i, llm in enumerate(router.llms)}
    missing = [name for name in models if name not in routable]
    if missing:
        known = set(LLM.objects.filter(name__in=missing).values_list("name", flat=True))
        unknown = [name for name in missing if name not in known]
        if unknown:
            raise InvalidRouteRequest("models", f"Unknown LLM(s): {', '.join(unknown)}.")
    usable = [name for name in models if name in routable and tenant_mask[routable[name]]]
    if not usable:
        raise InvalidRouteRequest(
            "models",
            f"None of {', '.join(models)} can be routed to: each is inactive, not yet profiled by the active "
            f"routing state, or not allowed for tenant {tenant.name!r}.",
        )


# --- routers and their reference samples ----------------------------------------------------------

class UnknownStrategy(InvalidRouteRequest):
    pass


_other_routers: dict[str, tuple[tuple, LoadedRouter]] = {}
_other_lock = threading.Lock()


def router_for(*, strategy: str | None) -> LoadedRouter:
    """The active router, or — when a request names another strategy — the newest state fitted with it."""
    router = active_router()
    if strategy is None or strategy == router.strategy_name:
        return router
    from routing import runtime

    row = RoutingState.objects.filter(strategy=strategy).order_by("-version").values_list("id", "revision").first()
    if row is None:
        fitted = sorted(set(RoutingState.objects.values_list("strategy", flat=True)))
        raise UnknownStrategy("strategy", f"No routing state has been fitted with {strategy!r}; fitted: {', '.join(fitted)}.")
    with _other_lock:
        cached = _other_routers.get(strategy)
        if cached is None or cached[0] != row:
            cached = (row, runtime.load_router(row[0]))
            _other_routers[strategy] = cached
    return cached[1]


_references: dict[tuple, ReferenceSample] = {}
_references_lock = threading.Lock()


def reference_sample(router: LoadedRouter) -> ReferenceSample:
    """Predicted losses and mean costs on (a sample of) the state's validation prompts, per state.

    The sample stands in for the tenant's future traffic when pacing solves for λ. Computed once per
    process and state revision (a new profile changes the LLM columns).
    """
    key = (router.state_id, router.revision, len(router.llms))
    with _references_lock:
        sample = _references.get(key)
    if sample is not None:
        return sample
    from registry.models import Prompt
    from registry.selectors import prompt_embeddings

    prompt_ids = list(RoutingState.objects.values_list("validation_prompt_ids", flat=True).get(id=router.state_id))
    size = settings.ROUTERHUB_PACING_REFERENCE_PROMPTS
    if len(prompt_ids) > size:
        prompt_ids = [prompt_ids[i] for i in np.linspace(0, len(prompt_ids) - 1, size).astype(int)]
    texts = dict(Prompt.objects.filter(id__in=prompt_ids).values_list("id", "text"))
    mean_tokens = float(np.mean(count_tokens([texts[i] for i in prompt_ids]))) if prompt_ids else 0.0
    losses = router.predict_loss(prompt_embeddings(prompt_ids=prompt_ids)).astype(np.float64)
    sample = ReferenceSample(losses=losses, mean_costs=expected_costs(router, input_tokens=mean_tokens))
    with _references_lock:
        _references.clear()  # only the newest state matters
        _references[key] = sample
    return sample


def reset_caches() -> None:
    with _references_lock:
        _references.clear()
    with _other_lock:
        _other_routers.clear()


# --- reads ----------------------------------------------------------------------------------------

class DecisionNotFound(LookupError):
    pass


def decision_get(*, decision_id, tenant: Tenant | None) -> Decision:
    """A decision the caller may see: its own tenant's, or any for staff (``tenant=None``)."""
    decisions = Decision.objects.select_related("llm", "tenant", "budget_period")
    if tenant is not None:
        decisions = decisions.filter(tenant=tenant)
    decision = decisions.filter(id=decision_id).first()
    if decision is None:
        raise DecisionNotFound(f"No decision {decision_id} for this tenant.")
    return decision


# --- feedback -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Feedback:
    actual_cost_usd: Decimal | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    quality_score: float | None = None


def decision_feedback(*, decision: Decision, feedback: Feedback) -> Decision:
    """Record what the client's call actually cost and how good it was; reconcile the budget.

    Fields given replace earlier ones, fields left out keep their value — so sending the same
    feedback twice changes nothing. The decision's budget entry becomes the actual cost if given,
    else its price × the reported tokens, else stays the estimate. A quality score is also stored
    as an Outcome (source "feedback") on the routed prompt, for later refits.
    """
    with transaction.atomic():
        decision = Decision.objects.select_for_update().select_related("llm", "tenant").get(id=decision.id)
        for name, value in feedback.__dict__.items():
            if value is not None:
                setattr(decision, name, value)
        budgets.reconcile(decision=decision, cost_usd=_counted_cost(decision))
        decision.feedback_at = timezone.now()
        if feedback.quality_score is not None:
            from routing.feedback_outcomes import outcome_from_feedback

            decision.outcome = outcome_from_feedback(decision=decision)
        decision.save()
    return decision


def _counted_cost(decision: Decision) -> Decimal:
    if decision.actual_cost_usd is not None:
        return budgets.usd(decision.actual_cost_usd)
    if decision.input_tokens is not None or decision.output_tokens is not None:
        cost = decision.llm.expected_cost_usd(
            input_tokens=decision.input_tokens if decision.input_tokens is not None else decision.prompt_tokens,
            output_tokens=decision.output_tokens if decision.output_tokens is not None else settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS,
        )
        if cost is not None:
            return budgets.usd(cost)
    return decision.estimated_cost_usd
