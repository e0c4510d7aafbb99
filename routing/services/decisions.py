"""Route requests (services): the one place a routing decision is made.

``route_create`` embeds the prompt, predicts each LLM's loss with the active routing state,
chooses λ (explicit, quality target, the tenant's default or budget pacing), selects an LLM with the
pure selector (``routing.selection``), reserves its estimated cost in the tenant's budget and writes
the decision — reservation and decision in one transaction, so every accepted request leaves
exactly one decision and its cost is counted exactly once. ``/api/v1/route`` and the gateway's
``routerhub-auto`` models both come here; a gateway call that names its LLM goes through
``direct_create``, which reserves and records the same way without routing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction

from routing import metrics
from routing.exceptions import BudgetExhausted
from routing.models import ApiKey, Decision, Tenant
from routing.prompt_text import routed_embedding
from routing.selection import NoCandidateError
from routing.selectors.budgets import BudgetStatus, refreshed
from routing.selectors.routers import RoutableLLM, router_for
from routing.selectors.tenancy import tenant_metrics_label
from routing.services import budget_policies, budgets
from routing.services.budget_leases import Lease, LeasedCall, leases, return_leases
from routing.services.embeddings import embed_cached
from routing.services.scoring import (
    DirectCall,
    Reason,
    RouteRequest,
    Scoring,
    direct_scoring,
    exploring,
    quality_target_note,
    ranked_alternatives,
    score,
)

# Attempts to reserve budget before the tenant's "budget spent" policy applies.
RESERVATION_ATTEMPTS = 4


@dataclass(frozen=True)
class Candidate:
    """An LLM a call may go to, with its estimated cost for this request."""

    llm: RoutableLLM
    estimated_cost_usd: Decimal
    predicted_quality: float | None = None


@dataclass
class RouteResult:
    decision: Decision
    llm: RoutableLLM
    budget: BudgetStatus
    notes: list[str] = field(default_factory=list)
    embed_ms: float = 0.0
    route_ms: float = 0.0
    budget_ms: float = 0.0
    embedding_cached: str = ""  # "memory", "shared" or "" (computed): routing/services/embeddings.py
    # The next-ranked candidates within the request's cost cap, best first (the gateway falls back to them).
    fallbacks: list[Candidate] = field(default_factory=list)
    strategy_params: dict = field(default_factory=dict)
    # Admitted against this process's budget lease: the decision is not written yet — the caller
    # hands it to budget_leases.settle.
    leased: LeasedCall | None = None


@dataclass(frozen=True)
class DecisionContext:
    """Who asked and what: everything a decision row records besides the scoring and the budget."""

    tenant: Tenant
    api_key: ApiKey | None
    request: RouteRequest


# What is done with the leases a call took out of this process's book to give back (too old, or too
# small for it): ``return_leases`` in the calling thread, or the gateway's writer thread.
GiveBack = Callable[[list[Lease]], object]


def route_create(
    *, tenant: Tenant, api_key=None, request: RouteRequest, give_back: GiveBack = return_leases
) -> RouteResult:
    router = router_for(strategy=request.strategy)
    started = time.perf_counter()
    embedding, cached = embed_cached(request.text, tenant_id=tenant.id)
    if request.context:
        context_embedding, context_cached = embed_cached(request.context, tenant_id=tenant.id)
        embedding, cached = routed_embedding(embedding, context_embedding), cached and context_cached
    embedded = time.perf_counter()
    status = budgets.budget_status_current(tenant=tenant)
    scoring = exploring(
        score(router, tenant=tenant, request=request, embedding=embedding, status=status),
        tenant=tenant,
        embedding=embedding,
    )
    choice = scoring.select(scoring.max_cost)
    routed = time.perf_counter()
    context = DecisionContext(tenant=tenant, api_key=api_key, request=request)
    result = _decide(scoring, choice, status, context, give_back=give_back)
    result.embed_ms, result.route_ms = (embedded - started) * 1e3, (routed - embedded) * 1e3
    result.budget_ms = (time.perf_counter() - routed) * 1e3
    result.embedding_cached = cached
    result.strategy_params = router.params
    return result


def direct_create(
    *, tenant: Tenant, api_key=None, llm: RoutableLLM, request: RouteRequest, give_back: GiveBack = return_leases
) -> RouteResult:
    """Reserve and record a call to the LLM the client named (the gateway's direct model names)."""
    scoring = direct_scoring(llm, request=request)
    status = budgets.budget_status_current(tenant=tenant)
    context = DecisionContext(tenant=tenant, api_key=api_key, request=request)
    return _decide(scoring, 0, status, context, give_back=give_back)


def _decide(
    scoring: Scoring, choice: int, status: BudgetStatus, context: DecisionContext, *, give_back: GiveBack
) -> RouteResult:
    """Admit the call (against this process's lease, or with a reservation of its own) and record it.
    The leases taken out of the book on the way go to ``give_back`` whatever happens — a 402 too: out
    of the book, neither the idle sweep nor shutdown would return them, and once expired the lease
    sweep would charge what they hold as spent."""
    router = scoring.router
    leased, to_return = _admit_leased(scoring, choice, status, context)
    try:
        if leased is not None:
            decision, notes = leased.decision, []
        else:
            decision, choice, status, notes = _reserve_and_record(scoring, choice, status, context)
    finally:
        if to_return:
            give_back(to_return)
    if metrics.enabled():
        metrics.observe_budget(
            tenant=tenant_metrics_label(name=context.tenant.name),
            remaining_usd=status.remaining_usd,
            lam=decision.lambda_used,
        )
    if decision.explored:
        # The estimates chose another LLM: a note on the target would judge the choice by them.
        notes = [
            *scoring.notes,
            *notes,
            f"Explored (the tenant's exploration share): routed to {router.llms[choice].name}, whose estimate is "
            f"less certain, instead of {decision.exploited['name']}, the best by the estimates.",
        ]
    elif decision.lambda_reason not in (Reason.BUDGET_EXHAUSTED, Reason.DIRECT):
        target_note = quality_target_note(scoring, choice)
        notes = [*scoring.notes, *notes, *([target_note] if target_note else [])]
    if router.llms[choice].uses_fallback:
        # Routoo-style predictors only score the LLMs they were trained on; say when they could not.
        notes = [
            *notes,
            f"{router.strategy_name} has no predictor head for {router.llms[choice].name} (not a training LLM): "
            f"its quality comes from the universal fallback ({router.strategy.fallback_name()}).",
        ]
    # Only the gateway falls back; a decision routed after the budget ran out has nowhere else to go.
    fallbacks = (
        []
        if context.request.source != Decision.Source.GATEWAY
        or decision.lambda_reason in (Reason.BUDGET_EXHAUSTED, Reason.DIRECT)
        else [
            Candidate(
                llm=router.llms[i],
                estimated_cost_usd=budgets.usd(scoring.costs[i]),
                predicted_quality=round(float(1.0 - scoring.losses[i]), 6),
            )
            for i in scoring.ranked(scoring.max_cost, exclude=choice)
        ]
    )
    return RouteResult(
        decision=decision,
        llm=router.llms[choice],
        budget=status,
        notes=notes,
        fallbacks=fallbacks,
        leased=leased,
    )


def _admit_leased(scoring: Scoring, choice: int, status: BudgetStatus, context: DecisionContext):
    """(the call admitted against this process's lease, leases taken out of the book to give back),
    or (None, …) when the call must reserve on its own: not a relaxed gateway call, or no lease
    covers it."""
    if not _relaxed_durability(context.request):
        return None, []
    amount = budgets.usd(scoring.costs[choice])
    lease, to_return = leases.take(status=status, amount=amount)
    if lease is None:
        return None, to_return
    decision = _decision_row(scoring, choice, status, context, reserved=amount, cap=scoring.max_cost)
    return LeasedCall(decision=decision, lease=lease), to_return


def _reserve_and_record(
    scoring: Scoring, choice: int, status: BudgetStatus, context: DecisionContext
) -> tuple[Decision, int, BudgetStatus, list[str]]:
    """Reserve the choice's cost and write the decision; when it no longer fits, choose again among
    the LLMs that fit what is left; when nothing fits, apply the tenant's "budget spent" policy.

    Optimistic first: one conditional UPDATE per attempt. A failure means other requests took budget
    meanwhile. The last attempt locks the period row before choosing, so it cannot lose the race:
    a request is refused only when nothing fits, never because of contention.
    """
    first_choice, cap = choice, scoring.max_cost
    attempts = RESERVATION_ATTEMPTS
    relaxed = _relaxed_durability(context.request)
    for attempt in range(attempts):
        if attempt < attempts - 1:
            # Optimistic: the reservation and the decision row in one statement, committed in one round
            # trip, so the tenant's budget period (one row every request of the tenant writes) is locked
            # only while the database runs it, never while this process's thread waits for the GIL.
            amount = budgets.usd(scoring.costs[choice])
            decision = _decision_row(scoring, choice, status, context, reserved=amount, cap=cap)
            reserved = budgets.reserve_with_decision(
                status=status, amount=amount, decision=decision, wait_for_disk=not relaxed
            )
        else:
            # The last attempt locks the period row before choosing, so it cannot lose the race.
            decision, locked_status, fitting = _reserve_locked(scoring, status, context, relaxed=relaxed)
            if decision is None:
                status = locked_status  # nothing fits in what is left
                break
            reserved, (choice, cap) = locked_status, fitting
        if reserved is not None:
            notes = (
                []
                if choice == first_choice
                else [
                    f"Only {reserved.remaining_usd + budgets.usd(scoring.costs[choice]):.10f} USD of the budget was "
                    f"left: candidates were limited to LLMs that fit in it (first choice: "
                    f"{scoring.router.llms[first_choice].name})."
                ]
            )
            return decision, choice, reserved, notes
        # Other requests took budget meanwhile: choose again within what is left.
        status = refreshed(status)
        fitting = _choose_within_budget(scoring, status)
        if fitting is None:
            break
        choice, cap = fitting
    return _route_when_spent(scoring, status, context)


def _reserve_locked(scoring: Scoring, status: BudgetStatus, context: DecisionContext, *, relaxed: bool):
    """Lock the period, choose within what is left and reserve: (decision, the new status, (choice, cap)),
    or (None, the period's status, None) when nothing fits."""
    with transaction.atomic():
        if relaxed:
            budgets.commit_without_waiting_for_disk()
        status = budgets.locked(status)
        fitting = _choose_within_budget(scoring, status)
        if fitting is None:
            return None, status, None
        choice, cap = fitting
        amount = budgets.usd(scoring.costs[choice])
        decision = _decision_row(scoring, choice, status, context, reserved=amount, cap=cap)
        decision.save(force_insert=True)
        reserved = budgets.reserve(status=status, amount=amount)  # fits: the row is locked
        return decision, reserved, fitting


def _relaxed_durability(request: RouteRequest) -> bool:
    """Whether this decision's reservation commits without waiting for the disk.

    Gateway calls, unless ``ROUTERHUB_GATEWAY_DURABLE_RESERVATIONS`` is set: the fsync is most of the
    gateway's own latency (benchmarks/results/measurements.md), holds the tenant's budget row locked
    while it lasts, and every other request of the tenant queues behind it. What is given up: if the
    database server crashes, reservations committed in the last ~0.6 s (3 × wal_writer_delay) may be
    lost with their decision rows — those calls then count nothing (docs/gateway-and-budgets.md,
    *Metering and the budget bound*). /api/v1/route keeps durable reservations: its client is told a
    decision id to report feedback against, which must survive."""
    return request.source == Decision.Source.GATEWAY and not settings.ROUTERHUB_GATEWAY_DURABLE_RESERVATIONS


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
    scoring: Scoring, status: BudgetStatus, context: DecisionContext
) -> tuple[Decision, int, BudgetStatus, list[str]]:
    """Nothing fits in what is left: the tenant's policy refuses (402) or picks the cheapest LLM.

    A call that named its LLM is refused whatever the policy: "the cheapest allowed LLM" of one
    candidate would be that LLM, called on at any price after the budget is spent."""
    tenant = context.tenant
    policy = (
        budget_policies.RejectWhenSpent()
        if isinstance(scoring.router, DirectCall)
        else budget_policies.when_spent_policy(tenant)
    )
    try:
        choice = policy.fallback(costs=scoring.costs, allowed_mask=scoring.allowed, status=status)
    except BudgetExhausted:
        budgets.count_rejection(status=status)
        raise
    amount = budgets.usd(scoring.costs[choice])
    with transaction.atomic():
        if _relaxed_durability(context.request):
            budgets.commit_without_waiting_for_disk()
        status = budgets.add_overage(status=status, amount=amount)
        decision = _decision_row(scoring, choice, status, context, overage=amount, exhausted=True)
        decision.save(force_insert=True)
    return decision, choice, status, ["The budget for this period is spent: routed to the cheapest allowed LLM."]


def _decision_row(
    scoring: Scoring,
    choice: int,
    status: BudgetStatus,
    context: DecisionContext,
    *,
    reserved: Decimal = Decimal(0),
    overage: Decimal = Decimal(0),
    cap: float | None = None,
    exhausted: bool = False,
) -> Decision:
    router = scoring.router
    lam, quality_target, reason = (
        (None, None, Reason.BUDGET_EXHAUSTED) if exhausted else (scoring.lam, scoring.quality_target, scoring.reason)
    )
    direct = isinstance(router, DirectCall)
    request = context.request
    exploited = None if exhausted else _exploited(scoring, choice, cap)
    return Decision(
        tenant=context.tenant,
        api_key=context.api_key,
        routed_text=request.text,
        prompt_tokens=request.input_tokens,
        llm_id=router.llms[choice].id,
        state_id=router.state_id,
        state_version=router.version,
        strategy=router.strategy_name,
        cluster=scoring.cluster,
        lambda_used=lam,
        lambda_reason=reason,
        predicted_quality=None if direct else float(1.0 - scoring.losses[choice]),
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
            weighed=scoring.ranking_costs,
        ),
        explored=exploited is not None,
        exploited=exploited,
        request={
            key: value
            for key, value in {
                "models": request.models,
                "lambda": request.lam,
                "quality_target": request.quality_target,
                "max_cost_usd": request.max_cost_usd,
                "strategy": request.strategy,
                "preset": request.preset,
                "max_tokens": request.output_tokens,
            }.items()
            if value is not None
        },
        source=request.source,
        call_status=Decision.CallStatus.PENDING if request.source == Decision.Source.GATEWAY else "",
    )


def _exploited(scoring: Scoring, choice: int, cap: float | None) -> dict | None:
    """The candidate the estimates alone choose under the same cap, as the answer shows it, when the
    request explored and chose another; else None."""
    if scoring.drawn is None:
        return None
    best = scoring.select(cap, exploit=True)
    if best == choice:
        return None
    return {
        "name": scoring.router.llms[best].name,
        "predicted_quality": round(float(1.0 - scoring.losses[best]), 6),
        "estimated_cost_usd": float(budgets.usd(scoring.costs[best])),
    }
