"""Scoring one route request: predicted losses, costs and candidates, λ by precedence, alternatives.

Pure reads of the loaded router and the request; ``routing/services/decisions.py`` turns a
:class:`Scoring` into a reserved, recorded decision. A gateway call that names its LLM is scored by
:func:`direct_scoring`: one candidate, nothing predicted, the same reservation and record.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from django.conf import settings

from registry.models import LLM
from routing.exceptions import FieldNotAccepted, InvalidRouteRequest
from routing.models import Decision, Tenant
from routing.selection import select
from routing.selectors.budgets import BudgetStatus
from routing.selectors.routers import LoadedRouter, RoutableLLM, reference_sample
from routing.selectors.tenancy import tenant_allowed_llm_ids
from routing.services import budget_policies
from routing.services.budgets import usd
from routing.strategies.exploration import explored_losses

Reason = Decision.LambdaReason
N_ALTERNATIVES = 5


@dataclass(frozen=True)
class RouteRequest:
    text: str  # what is embedded and routed on (stored with the decision)
    input_tokens: int  # what the chosen LLM will be sent (a whole chat, not only the routed turn)
    models: list[str] | None = None
    lam: float | None = None
    quality_target: float | None = None
    max_cost_usd: float | None = None
    strategy: str | None = None
    # The gateway's additions: the output length to reserve for (the most the call can bill; None: the
    # expected output), the output it is expected to write when that is less (what λ weighs: the
    # expected cost, not the bound), a preset's name and LLMs, and who calls the LLM.
    output_tokens: int | None = None
    expected_output_tokens: int | None = None
    preset: str | None = None
    preset_llm_ids: frozenset[int] | None = None
    source: str = Decision.Source.ROUTE
    context: str = ""  # earlier turns and system prompts: they nudge the request's embedding (prompt_text.py)
    # Fields the gateway passes on that bill beyond token prices: only LLMs that accept them are
    # candidates, at the prices they give (registry/gateway_fields.py).
    fields: tuple[str, ...] = ()

    @property
    def needs_api(self) -> bool:
        """The gateway calls the LLM itself: only LLMs with an ``api_base`` are candidates."""
        return self.source == Decision.Source.GATEWAY


@dataclass(frozen=True)
class DirectCall:
    """Stands in for the router when the client named the LLM: one candidate, no state, no prediction."""

    llms: tuple[RoutableLLM, ...]
    state_id: None = None
    version: int = 0
    strategy_name: str = "direct"


@dataclass(frozen=True)
class Scoring:
    """One prompt scored by the router, with the request's constraints: what selection works on."""

    router: LoadedRouter | DirectCall
    losses: np.ndarray  # [llms] predicted loss
    costs: np.ndarray  # [llms] estimated USD: what a choice reserves, and what cost caps compare
    allowed: np.ndarray  # [llms] tenant's and request's candidates
    max_cost: float | None  # per-request cap
    lam: float | None
    quality_target: float | None
    reason: str
    cluster: int | None
    notes: tuple[str, ...] = ()  # what the answer should tell about λ (budget pacing)
    # [llms] the expected costs the choice weighs (λ·cost, cheapest meeting a quality target) when they
    # are not ``costs``: a gateway call reserves the most it can cost, but is routed on what it should.
    ranking_costs: np.ndarray | None = None
    # [llms] a posterior draw of the losses when this request explores (:func:`exploring`): the choice
    # is made on it, among the same candidates; ``losses`` stay the estimates every answer reports.
    drawn: np.ndarray | None = None

    @property
    def weighed(self) -> np.ndarray:
        return self.costs if self.ranking_costs is None else self.ranking_costs

    def within(self, max_cost: float | None) -> np.ndarray:
        """The candidates whose reservation fits ``max_cost``."""
        return self.allowed if max_cost is None else self.allowed & (self.costs <= max_cost)

    def select(self, max_cost: float | None, *, exploit: bool = False) -> int:
        """The candidate within ``max_cost`` to route to: on the drawn losses when the request explores
        (unless ``exploit``: what the estimates alone choose)."""
        losses = self.losses if exploit or self.drawn is None else self.drawn
        return int(
            select(
                losses[None, :],
                self.weighed,
                lam=self.lam or 0.0,
                allowed_mask=self.within(max_cost),
                quality_target=self.quality_target,
            )[0]
        )

    def ranked(self, max_cost: float | None, *, exclude: int, lam: float | None = None) -> list[int]:
        """The other candidates within ``max_cost``, in the order the selector prefers them."""
        return ranked_indices(
            self.losses,
            self.costs,
            allowed=self.allowed,
            max_cost=max_cost,
            lam=self.lam if lam is None else lam,
            quality_target=self.quality_target,
            exclude=exclude,
            weighed=self.ranking_costs,
        )


def direct_scoring(llm: RoutableLLM, *, request: RouteRequest) -> Scoring:
    """The one LLM the client named, with its estimated cost: reserved and recorded like a routed choice."""
    return Scoring(
        router=DirectCall(llms=(llm,)),
        losses=np.zeros(1),  # nothing is predicted: the decision records no quality
        costs=np.array(
            [
                llm.expected_cost_usd(
                    input_tokens=request.input_tokens,
                    output_tokens=_first_set(request.output_tokens, settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS),
                )
            ]
        ),
        allowed=np.array([True]),
        max_cost=None,
        lam=None,
        quality_target=None,
        reason=Reason.DIRECT,
        cluster=None,
    )


def score(
    router: LoadedRouter, *, tenant: Tenant, request: RouteRequest, embedding: np.ndarray, status: BudgetStatus
) -> Scoring:
    allowed = allowed_mask(
        router,
        tenant=tenant,
        models=request.models,
        preset_llm_ids=request.preset_llm_ids,
        needs_api=request.needs_api,
    )
    llms = router.llms
    if request.fields:
        llms, allowed = fields_priced(router.llms, fields=request.fields, allowed=allowed)
    costs = costs_of(llms, input_tokens=request.input_tokens, output_tokens=request.output_tokens)
    ranking_costs = None
    if request.expected_output_tokens not in (None, request.output_tokens):
        ranking_costs = costs_of(llms, input_tokens=request.input_tokens, output_tokens=request.expected_output_tokens)
    max_cost = _first_set(request.max_cost_usd, tenant.default_max_cost_usd)
    if max_cost is not None and not (costs[allowed] <= max_cost).any():
        raise InvalidRouteRequest(
            "max_cost_usd",
            f"No allowed LLM costs at most {max_cost:g} USD for this prompt "
            f"(the cheapest would cost {costs[allowed].min():.8f} USD).",
        )
    lam, quality_target, reason = lambda_and_target(tenant=tenant, request=request)
    notes = ()
    if reason == Reason.BUDGET_PACING:
        # Paced over this request's own candidates: a request limited to cheap LLMs, by `models` or
        # `max_cost_usd`, may already fit the pace without any cost weight.
        candidates = allowed if max_cost is None else allowed & (costs <= max_cost)
        paced = budget_policies.paced_lambda(
            tenant=tenant,
            status=status,
            reference_key=(router.state_id, router.revision),
            reference=lambda: reference_sample(router),
            candidates=candidates,
        )
        lam, notes = paced.lam, (() if paced.note is None else (paced.note,))
    return Scoring(
        router=router,
        losses=router.predict_loss(embedding)[0].astype(np.float64),
        costs=costs,
        allowed=allowed,
        max_cost=max_cost,
        lam=lam,
        quality_target=quality_target,
        reason=reason,
        cluster=router.cluster_of(embedding),
        notes=notes,
        ranking_costs=ranking_costs,
    )


def exploration_share(tenant: Tenant) -> float:
    """The share of the tenant's requests that explore: its own, at most ROUTERHUB_EXPLORATION_MAX_SHARE."""
    return min(float(tenant.exploration_share or 0.0), float(settings.ROUTERHUB_EXPLORATION_MAX_SHARE))


def exploration_rng() -> np.random.Generator:
    """A generator seeded from the OS for one request (numpy's generators are not shared across threads)."""
    return np.random.default_rng()


def exploring(scoring: Scoring, *, tenant: Tenant, embedding: np.ndarray) -> Scoring:
    """``scoring`` with a posterior draw of the losses when this request explores
    (``routing/strategies/exploration.py``), else ``scoring`` itself. The draw only reorders the
    candidates: the allow mask, the cost cap and the budget's reservation apply to it as to any choice."""
    share = exploration_share(tenant)
    if share <= 0.0 or isinstance(scoring.router, DirectCall):
        return scoring
    rng = exploration_rng()
    drawn, explores = explored_losses(
        scoring.losses[None, :],
        scoring.router.evidence_near(embedding)[None, :],
        share=share,
        rng=rng,
        own=scoring.router.own_counts_near(embedding),
    )
    return replace(scoring, drawn=drawn[0]) if explores[0] else scoring


def costs_of(llms, *, input_tokens: float, output_tokens: float | None) -> np.ndarray:
    """Estimated USD per LLM (``LoadedRouter.expected_costs`` for LLMs priced for a call's fields)."""
    output_tokens = _first_set(output_tokens, settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS)
    return np.array(
        [llm.expected_cost_usd(input_tokens=input_tokens, output_tokens=output_tokens) for llm in llms],
        dtype=np.float64,
    )


def fields_priced(llms, *, fields: tuple[str, ...], allowed: np.ndarray) -> tuple[list, np.ndarray]:
    """The LLMs as a call that sets ``fields`` is billed (their prices for them), and the candidates
    narrowed to those that accept them all; raises :class:`FieldNotAccepted` naming a field when no
    candidate is left."""
    priced = [llm.priced_for(fields) for llm in llms]
    accepting = np.array([p is not None for p in priced], dtype=bool)
    if not (allowed & accepting).any():
        candidates = [llm for llm, ok in zip(llms, allowed) if ok]
        refused = [f for f in fields if all(llm.unaccepted([f]) for llm in candidates)]
        named = ", ".join(f"`{f}`" for f in (refused or fields))
        raise FieldNotAccepted(
            (refused or list(fields))[0],
            f"No LLM this request may go to accepts {named}{'' if refused else ' together'}: "
            "it changes what the provider bills beyond the LLM's token prices, and an LLM's metadata "
            "must list it under `gateway_fields`, with its prices, for routerhub to pass it on.",
        )
    return [llm if p is None else p for llm, p in zip(llms, priced)], allowed & accepting


def quality_target_note(scoring: Scoring, choice: int) -> str | None:
    """Say so when the quality target was out of reach: the selector picks the cheapest candidate that
    reaches it, so a choice below the target means no candidate (allowed, within the cost cap and
    what is left of the budget) is predicted to — and the client may not expect that."""
    if scoring.quality_target is None:
        return None
    quality = 1.0 - scoring.losses
    if quality[choice] >= scoring.quality_target:
        return None
    chosen = f"routed to the best predicted quality, {quality[choice]:.4f} ({scoring.router.llms[choice].name})"
    best_allowed = np.nanmax(np.where(scoring.allowed, quality, np.nan))
    if best_allowed >= scoring.quality_target:
        return (
            f"Only LLMs above the cost cap or what is left of the budget are predicted to reach the quality "
            f"target {scoring.quality_target:g}: {chosen}."
        )
    return f"No allowed LLM is predicted to reach the quality target {scoring.quality_target:g}: {chosen}."


def _first_set(*values):
    return next((v for v in values if v is not None), None)


def lambda_and_target(*, tenant: Tenant, request: RouteRequest) -> tuple[float | None, float | None, str]:
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


def ranked_indices(losses, costs, *, allowed, max_cost, lam, quality_target, exclude: int, weighed=None) -> list[int]:
    """Indices of the candidates (allowed, ``costs`` within the cost cap) other than ``exclude``, best
    first by ``weighed`` costs (default: ``costs``)."""
    quality = 1.0 - losses
    if max_cost is not None:
        allowed = allowed & (costs <= max_cost)
    costs = costs if weighed is None else weighed
    if quality_target is not None:
        # those that meet the target, cheapest first, then the rest by predicted quality
        keys = [(0, costs[i]) if quality[i] >= quality_target else (1, -quality[i]) for i in range(len(costs))]
    else:
        keys = [(0, losses[i] + (lam or 0.0) * costs[i]) for i in range(len(costs))]
    return sorted((i for i in np.flatnonzero(allowed) if i != exclude), key=lambda i: keys[i])


def ranked_alternatives(
    router: LoadedRouter | DirectCall,
    losses,
    costs,
    *,
    allowed,
    max_cost,
    lam,
    quality_target,
    exclude: int,
    weighed=None,
) -> list[dict]:
    """The next best candidates (allowed, within the cost cap), in the order the selector prefers them,
    each with what it would reserve."""
    quality = 1.0 - losses
    order = ranked_indices(
        losses,
        costs,
        allowed=allowed,
        max_cost=max_cost,
        lam=lam,
        quality_target=quality_target,
        exclude=exclude,
        weighed=weighed,
    )
    return [
        {
            "name": router.llms[i].name,
            "predicted_quality": round(float(quality[i]), 6),
            "estimated_cost_usd": float(usd(costs[i])),
        }
        for i in order[:N_ALTERNATIVES]
    ]


def allowed_mask(
    router: LoadedRouter,
    *,
    tenant: Tenant,
    models: list[str] | None,
    preset_llm_ids: frozenset[int] | None = None,
    needs_api: bool = False,
) -> np.ndarray:
    allowed_ids = tenant_allowed_llm_ids(tenant=tenant)
    mask = np.array([not allowed_ids or llm.id in allowed_ids for llm in router.llms], dtype=bool)
    if preset_llm_ids:
        mask &= np.array([llm.id in preset_llm_ids for llm in router.llms], dtype=bool)
    if needs_api:
        mask &= np.array([bool(llm.api_base) for llm in router.llms], dtype=bool)
    if models:
        _check_model_names(router, tenant=tenant, models=models, tenant_mask=mask)
        wanted = set(models)
        mask &= np.array([llm.name in wanted for llm in router.llms], dtype=bool)
    if not mask.any():
        raise InvalidRouteRequest(
            "models",
            f"Tenant {tenant.name!r} is not allowed any LLM the active router can route to"
            + (" and call (an LLM with an api_base)." if needs_api else "."),
        )
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
