"""Reads of shadow evaluation: per tenant and period, how routed answers fared against the comparison
LLM's, what routing saved, and the prompts where it lost most (selectors)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce

from routing.intervals import wilson
from routing.models import ShadowBudget, ShadowEvaluation, Tenant

ZERO = Decimal(0)
Status = ShadowEvaluation.Status
Verdict = ShadowEvaluation.Verdict
PROMPT_CHARS = 600  # of a prompt or an answer, on the list of losses


@dataclass(frozen=True)
class TenantShadow:
    """One tenant's shadow evaluations in a period."""

    tenant: str
    logs_text: bool
    wins: int
    ties: int
    losses: int
    no_verdict: int  # judged, but the judge gave no verdict (refused, unparseable)
    waiting: int  # pending or compared
    no_budget: int
    failed: int
    routed_usd: Decimal  # of the judged exchanges with a verdict
    comparison_usd: Decimal
    judge_usd: Decimal

    @property
    def judged(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def not_worse(self) -> float | None:
        """Share of judged exchanges where the routed answer was as good as the comparison's, or better."""
        return (self.wins + self.ties) / self.judged if self.judged else None

    @property
    def not_worse_interval(self) -> tuple[float, float] | None:
        return wilson(self.wins + self.ties, self.judged)

    @property
    def saved_usd(self) -> Decimal:
        """What routing saved on the judged exchanges: the comparison's cost − the routed calls' cost."""
        return self.comparison_usd - self.routed_usd

    @property
    def saved_share(self) -> float | None:
        return float(self.saved_usd / self.comparison_usd) if self.comparison_usd > 0 else None

    @property
    def shadow_usd(self) -> Decimal:
        """What evaluating them cost the shadow budget (comparison calls and judge)."""
        return self.comparison_usd + self.judge_usd


@dataclass(frozen=True)
class Loss:
    decision_id: str
    created_at: datetime
    routed_llm: str
    comparison_llm: str
    score: float
    prompt: str
    routed_text: str
    comparison_text: str
    routed_usd: Decimal
    comparison_usd: Decimal


def _period(since: date, until: date) -> Q:
    start = datetime.combine(since, time.min, tzinfo=UTC)
    end = datetime.combine(until, time.max, tzinfo=UTC)
    return Q(created_at__gte=start, created_at__lte=end)


def shadow_summary(*, tenant: Tenant | None, since: date, until: date) -> list[TenantShadow]:
    """Each tenant's figures between two UTC dates (inclusive); ``tenant`` narrows to one. Costs are
    summed over the exchanges judged with a verdict, so that saving and quality speak of the same calls.
    One query."""
    rows = ShadowEvaluation.objects.filter(_period(since, until))
    if tenant is not None:
        rows = rows.filter(tenant=tenant)
    judged = Q(status=Status.JUDGED, verdict__in=[Verdict.WIN, Verdict.TIE, Verdict.LOSS])
    grouped = (
        rows.values("tenant__name", "tenant__log_gateway_text")
        .annotate(
            wins=Count("pk", filter=Q(status=Status.JUDGED, verdict=Verdict.WIN)),
            ties=Count("pk", filter=Q(status=Status.JUDGED, verdict=Verdict.TIE)),
            losses=Count("pk", filter=Q(status=Status.JUDGED, verdict=Verdict.LOSS)),
            no_verdict=Count("pk", filter=Q(status=Status.JUDGED, verdict__in=[Verdict.REFUSED, Verdict.UNPARSEABLE])),
            waiting=Count("pk", filter=Q(status__in=[Status.PENDING, Status.COMPARED])),
            no_budget=Count("pk", filter=Q(status=Status.NO_BUDGET)),
            failed=Count("pk", filter=Q(status=Status.FAILED)),
            routed_usd=Coalesce(Sum("routed_cost_usd", filter=judged), ZERO),
            comparison_usd=Coalesce(Sum("comparison_cost_usd", filter=judged), ZERO),
            judge_usd=Coalesce(Sum("judge_cost_usd", filter=Q(status=Status.JUDGED)), ZERO),
        )
        .order_by("tenant__name")
    )
    return [
        TenantShadow(
            tenant=row.pop("tenant__name"),
            logs_text=row.pop("tenant__log_gateway_text"),
            **row,
        )
        for row in grouped
    ]


def shadow_losses(*, tenant: Tenant, since: date, until: date, limit: int = 10) -> list[Loss]:
    """The judged exchanges where the routed answer fared worst (lowest score, then the dearest
    comparison), with their text — only for a tenant that logs its gateway text (else none is kept)."""
    if not tenant.log_gateway_text:
        return []
    rows = (
        ShadowEvaluation.objects.filter(
            _period(since, until), tenant=tenant, status=Status.JUDGED, verdict=Verdict.LOSS
        )
        .select_related("routed_llm", "comparison_llm")
        .order_by("score", F("comparison_cost_usd").desc(nulls_last=True), "-created_at")[:limit]
    )
    return [
        Loss(
            decision_id=str(row.decision_id),
            created_at=row.created_at,
            routed_llm=row.routed_llm.name,
            comparison_llm=row.comparison_llm.name,
            score=row.score,
            prompt=_last_user_text(row.request.get("messages") or [])[:PROMPT_CHARS],
            routed_text=row.routed_text[:PROMPT_CHARS],
            comparison_text=row.comparison_text[:PROMPT_CHARS],
            routed_usd=row.routed_cost_usd,
            comparison_usd=row.comparison_cost_usd or ZERO,
        )
        for row in rows
    ]


def _last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            return content if isinstance(content, str) else ""
    return ""


def shadow_budgets(*, tenant: Tenant | None) -> list[ShadowBudget]:
    """The shadow budgets that pay for ``tenant``'s evaluations (its own and the global one); every
    budget when ``tenant`` is None."""
    budgets = ShadowBudget.objects.select_related("tenant")
    if tenant is not None:
        budgets = budgets.filter(Q(tenant=tenant) | Q(tenant__isnull=True))
    return list(budgets.order_by(F("tenant__name").asc(nulls_first=True)))
