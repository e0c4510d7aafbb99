"""Feedback on a routed call (services): what it cost and how good it was.

Feedback reconciles the decision's budget entry with the reported cost, and a quality score becomes
an Outcome on the routed prompt, so refits can learn from real traffic. The routed text is stored as
a Prompt of one prompt set (``ROUTERHUB_FEEDBACK_PROMPT_SET``), keyed by a hash of its text so
repeated prompts share a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from registry.models import Outcome
from registry.services import prompt_record
from routing.exceptions import InvalidRouteRequest
from routing.models import Decision
from routing.prompt_text import embeddable
from routing.selectors.embeddings import embed_cached
from routing.services import budgets


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
    if decision.source == Decision.Source.GATEWAY:
        measured = [
            name
            for name in ("actual_cost_usd", "input_tokens", "output_tokens", "latency_ms")
            if getattr(feedback, name) is not None
        ]
        if measured:
            raise InvalidRouteRequest(
                measured[0],
                "The gateway called this LLM and measured its cost, tokens and latency itself; "
                "only quality_score can be reported.",
            )
    with transaction.atomic():
        # Only the decision's row: locking its LLM and tenant rows too would deadlock with a route request
        # that holds the budget row and inserts a decision referring to them.
        decision = Decision.objects.select_for_update(of=("self",)).select_related("llm", "tenant").get(id=decision.id)
        for name, value in feedback.__dict__.items():
            if value is not None:
                setattr(decision, name, value)
        budgets.reconcile(decision=decision, cost_usd=_counted_cost(decision))
        decision.feedback_at = timezone.now()
        if feedback.quality_score is not None:
            decision.outcome = outcome_from_feedback(decision=decision)
        decision.save()
    return decision


def _counted_cost(decision: Decision) -> Decimal:
    if decision.actual_cost_usd is not None:
        return budgets.usd(decision.actual_cost_usd)
    if decision.input_tokens is not None or decision.output_tokens is not None:
        cost = decision.llm.expected_cost_usd(
            input_tokens=decision.input_tokens if decision.input_tokens is not None else decision.prompt_tokens,
            output_tokens=decision.output_tokens
            if decision.output_tokens is not None
            else settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS,
        )
        if cost is not None:
            return budgets.usd(cost)
    return decision.estimated_cost_usd


def outcome_from_feedback(*, decision: Decision) -> Outcome:
    prompt = prompt_record(
        prompt_set_name=settings.ROUTERHUB_FEEDBACK_PROMPT_SET,
        prompt_set_description="Routed prompts with quality feedback from API clients.",
        source="POST /api/v1/route/{id}/feedback",
        text=decision.routed_text,
        embed=lambda text: embed_cached(embeddable(text))[0],
        metadata={"tenant": decision.tenant.name, "decision": str(decision.id)},
    )
    outcome, _ = Outcome.objects.update_or_create(
        llm=decision.llm,
        prompt=prompt,
        defaults={
            "score": decision.quality_score,
            "source": Outcome.Source.FEEDBACK,
            "cost_usd": float(decision.actual_cost_usd) if decision.actual_cost_usd is not None else None,
            "latency_ms": decision.latency_ms,
            "input_tokens": decision.input_tokens,
            "output_tokens": decision.output_tokens,
        },
    )
    return outcome
