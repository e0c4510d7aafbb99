"""A route request that is scored but not made: the dashboard's "Try it" page.

It runs the route API's own steps — the same router, embedding cache, candidate rules and
``services/scoring.score`` — with an explicit λ, and stops before anything is written: no decision,
no reservation, no budget spent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routing.models import Tenant
from routing.prompt_text import route_input
from routing.selectors.routers import router_for
from routing.services.embeddings import embed_cached
from routing.services.scoring import RouteRequest, score

# The slider's λ range spans cost weights where quality decides (low end) to where price decides
# (high end): λ·(a typical cost difference) from 1/100 to 100 times a whole unit of loss.
LAMBDA_SPAN = (0.01, 100.0)


@dataclass(frozen=True)
class RankedLLM:
    name: str
    predicted_quality: float
    estimated_cost_usd: float
    objective: float  # predicted loss + λ · cost: what the selector minimises
    allowed: bool


@dataclass(frozen=True)
class RoutePreview:
    lam: float
    chosen: str
    cluster: int | None
    input_tokens: int
    ranking: list[RankedLLM]  # candidates best first, then the LLMs this tenant may not use (or over its cap)
    lambda_range: tuple[float, float]
    strategy: str
    state_version: int


def route_preview(*, tenant: Tenant, prompt: str, lam: float) -> RoutePreview:
    """Score ``prompt`` for ``tenant`` with cost weight ``lam``; writes nothing."""
    routed = route_input(prompt=prompt)
    text, input_tokens = routed.request, routed.input_tokens
    router = router_for(strategy=None)
    # the tenant's own part of the cache (staff trying as no tenant: an unsaved tenant, id None, a part of its own)
    embedding, _ = embed_cached(text, tenant_id=tenant.id)
    # status is only read when λ is paced; an explicit λ never is.
    scoring = score(
        router,
        tenant=tenant,
        request=RouteRequest(text=text, input_tokens=input_tokens, lam=lam),
        embedding=embedding,
        status=None,
    )
    chosen = scoring.select(scoring.max_cost)
    eligible = scoring.allowed & (scoring.costs <= scoring.max_cost if scoring.max_cost is not None else True)
    objective = scoring.losses + lam * scoring.costs
    # The selector's own order: objective, then the cheaper LLM, then the lower index.
    order = sorted(range(len(router.llms)), key=lambda i: (not eligible[i], objective[i], scoring.costs[i], i))
    ranking = [
        RankedLLM(
            name=router.llms[i].name,
            predicted_quality=float(1.0 - scoring.losses[i]),
            estimated_cost_usd=float(scoring.costs[i]),
            objective=float(objective[i]),
            allowed=bool(eligible[i]),
        )
        for i in order
    ]
    return RoutePreview(
        lam=lam,
        chosen=router.llms[chosen].name,
        cluster=scoring.cluster,
        input_tokens=input_tokens,
        ranking=ranking,
        lambda_range=lambda_range(scoring.costs[scoring.allowed]),
        strategy=router.strategy_name,
        state_version=router.version,
    )


def lambda_range(costs: np.ndarray) -> tuple[float, float]:
    """(low, high) ends of a logarithmic λ slider for these per-query costs."""
    positive = costs[costs > 0]
    typical = float(np.median(positive)) if len(positive) else 1.0
    return LAMBDA_SPAN[0] / typical, LAMBDA_SPAN[1] / typical
