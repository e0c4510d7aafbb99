"""Route requests (services): the one place a routing decision is made.

``route_create`` embeds the prompt, predicts each LLM's loss with the active routing state,
chooses λ (explicit, quality target, the tenant's default or budget pacing), selects an LLM with the
pure selector (``routing.selection``), reserves its estimated cost in the tenant's budget and writes
the decision — reservation and decision in one transaction, so every accepted request leaves
exactly one decision and its cost is counted exactly once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from routing.exceptions import InvalidRouteRequest, UnknownStrategy  # noqa: F401  (raised by what route_create calls)
from routing.models import Decision, Tenant
from routing.selection import NoCandidateError
from routing.selectors.budgets import BudgetStatus, refreshed
from routing.selectors.embeddings import embed_cached
from routing.selectors.routers import RoutableLLM, router_for
from routing.services import budget_policies, budgets
from routing.services.scoring import (
    Reason,
    RouteRequest,
    Scoring,
    quality_target_note,
    ranked_alternatives,
    score,
)


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


def route_create(*, tenant: Tenant, api_key=None, request: RouteRequest) -> RouteResult:
    router = router_for(strategy=request.strategy)
    started = time.perf_counter()
    embedding, cached = embed_cached(request.text, tenant_id=tenant.id)
    embedded = time.perf_counter()
    status = budgets.budget_status_current(tenant=tenant)
    scoring = score(router, tenant=tenant, request=request, embedding=embedding, status=status)
    choice = scoring.select(scoring.max_cost)
    routed = time.perf_counter()
    decision, choice, status, notes = _reserve_and_record(
        scoring, choice, status, tenant=tenant, api_key=api_key, request=request
    )
    finished = time.perf_counter()
    if decision.lambda_reason != Reason.BUDGET_EXHAUSTED:
        target_note = quality_target_note(scoring, choice)
        notes = [*scoring.notes, *notes, *([target_note] if target_note else [])]
    if router.llms[choice].uses_fallback:
        # Routoo-style predictors only score the LLMs they were trained on; say when they could not.
        notes = [
            *notes,
            f"{router.strategy_name} has no predictor head for {router.llms[choice].name} (not a training LLM): "
            f"its quality comes from the universal fallback ({router.strategy.fallback_name()}).",
        ]
    return RouteResult(
        decision=decision,
        llm=router.llms[choice],
        budget=status,
        notes=notes,
        embed_ms=(embedded - started) * 1e3,
        route_ms=(routed - embedded) * 1e3,
        budget_ms=(finished - routed) * 1e3,
        embedding_cached=cached,
    )


def _reserve_and_record(
    scoring: Scoring, choice: int, status: BudgetStatus, **context
) -> tuple[Decision, int, BudgetStatus, list[str]]:
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
                notes = (
                    []
                    if choice == first_choice
                    else [
                        f"Only {reserved.remaining_usd + amount:.10f} USD of the budget was left: candidates were "
                        f"limited to LLMs that fit in it (first choice: {scoring.router.llms[first_choice].name})."
                    ]
                )
                return decision, choice, reserved, notes
        status = refreshed(status)
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


def _route_when_spent(
    scoring: Scoring, status: BudgetStatus, **context
) -> tuple[Decision, int, BudgetStatus, list[str]]:
    """Nothing fits in what is left: the tenant's policy refuses (402) or picks the cheapest LLM."""
    tenant = context["tenant"]
    try:
        choice = budget_policies.when_spent_policy(tenant).fallback(
            costs=scoring.costs, allowed_mask=scoring.allowed, status=status
        )
    except budget_policies.BudgetExhausted:
        budgets.count_rejection(status=status)
        raise
    amount = budgets.usd(scoring.costs[choice])
    with transaction.atomic():
        status = budgets.add_overage(status=status, amount=amount)
        decision = _write_decision(scoring, choice, status, overage=amount, exhausted=True, **context)
    return decision, choice, status, ["The budget for this period is spent: routed to the cheapest allowed LLM."]


def _write_decision(
    scoring: Scoring,
    choice: int,
    status: BudgetStatus,
    *,
    tenant: Tenant,
    api_key,
    request: RouteRequest,
    reserved: Decimal = Decimal(0),
    overage: Decimal = Decimal(0),
    cap: float | None = None,
    exhausted: bool = False,
) -> Decision:
    router = scoring.router
    lam, quality_target, reason = (
        (None, None, Reason.BUDGET_EXHAUSTED) if exhausted else (scoring.lam, scoring.quality_target, scoring.reason)
    )
    return Decision.objects.create(
        tenant=tenant,
        api_key=api_key,
        routed_text=request.text,
        prompt_tokens=request.input_tokens,
        llm_id=router.llms[choice].id,
        state_id=router.state_id,
        state_version=router.version,
        strategy=router.strategy_name,
        cluster=scoring.cluster,
        lambda_used=lam,
        lambda_reason=reason,
        predicted_quality=float(1.0 - scoring.losses[choice]),
        estimated_cost_usd=budgets.usd(scoring.costs[choice]),
        budget_period_id=status.period_id,
        reserved_usd=reserved,
        overage_usd=overage,
        alternatives=ranked_alternatives(
            router,
            scoring.losses,
            scoring.costs,
            allowed=scoring.allowed,
            max_cost=cap,
            lam=lam,
            quality_target=quality_target,
            exclude=choice,
        ),
        request={
            key: value
            for key, value in {
                "models": request.models,
                "lambda": request.lam,
                "quality_target": request.quality_target,
                "max_cost_usd": request.max_cost_usd,
                "strategy": request.strategy,
            }.items()
            if value is not None
        },
    )
