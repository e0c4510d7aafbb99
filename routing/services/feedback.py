"""Feedback on a routed call (services): what it cost and how good it was.

Feedback reconciles the decision's budget entry with the reported cost, and a quality score becomes
an Outcome on the routed prompt, so refits can learn from real traffic. The routed text is stored as
a Prompt of one prompt set (:data:`PROMPT_SET`), keyed by a hash of its text so
repeated prompts share a row.

Feedback is the tenant's word, so it is bounded: a reported cost may raise what a decision counts,
but lower it only down to what the prompt tokens routerhub counted cost at the LLM's prices —
otherwise reporting 0 after every call would make routing free. Every feedback is kept
(:class:`~routing.models.DecisionFeedback`): a later one that changes a score or a cost does not
erase what was reported before.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Avg
from django.utils import timezone

from registry.models import Outcome, Prompt
from registry.services import prompt_record
from routing.exceptions import InvalidFeedback
from routing.models import Decision, DecisionFeedback
from routing.prompt_text import embeddable
from routing.services import budgets
from routing.services.embeddings import embed_cached
from routing.services.evidence import SOURCE_FEEDBACK, evidence_record

# The prompt set that holds routed prompts with quality feedback (outcomes of source "feedback").
PROMPT_SET = "feedback"


@dataclass(frozen=True)
class Feedback:
    actual_cost_usd: Decimal | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    quality_score: float | None = None

    def given(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass
class FeedbackResult:
    decision: Decision
    notes: list[str] = field(default_factory=list)


def decision_feedback(*, decision: Decision, feedback: Feedback, api_key=None) -> FeedbackResult:
    """Record what the client's call actually cost and how good it was; reconcile the budget.

    Fields given replace earlier ones, fields left out keep their value — so sending the same
    feedback twice changes nothing. The decision counts its reported cost (the actual cost if given,
    else its price × the reported tokens), but never less than its counted prompt tokens cost, and
    stays at the estimate while no cost was reported. A quality score is also stored as an Outcome
    (source "feedback") on the routed prompt, for later refits, and — from a tenant trusted for learning —
    as evidence for the LLM that answered (``services/evidence.py``).
    """
    if decision.source == Decision.Source.GATEWAY:
        measured = [
            name
            for name in ("actual_cost_usd", "input_tokens", "output_tokens", "latency_ms")
            if getattr(feedback, name) is not None
        ]
        if measured:
            raise InvalidFeedback(
                measured[0],
                "The gateway called this LLM and measured its cost, tokens and latency itself; "
                "only quality_score can be reported.",
            )
    prompt = None
    if feedback.quality_score is not None:
        # Embedding a new prompt takes milliseconds to seconds: done before any lock is taken, so the
        # tenant's route requests never queue behind it on the budget row.
        prompt = routed_prompt(decision)
    with transaction.atomic():
        # Only the decision's row: locking its LLM and tenant rows too would deadlock with a route request
        # that holds the budget row and inserts a decision referring to them.
        decision = Decision.objects.select_for_update(of=("self",)).select_related("llm", "tenant").get(id=decision.id)
        given = feedback.given()
        changed = {name: value for name, value in given.items() if getattr(decision, name) != value}
        if decision.feedback_at is not None and not changed:
            return FeedbackResult(decision)  # the same feedback again: nothing to do
        notes = _score_change_note(decision, changed)
        for name, value in given.items():
            setattr(decision, name, value)
        floor_note = None
        if decision.source != Decision.Source.GATEWAY:  # a gateway call counts what the gateway measured
            decision.reported_cost_usd = _reported_cost(decision)
            counted, floor_note = _counted_cost(decision)
            budgets.reconcile(decision=decision, cost_usd=counted)
        decision.feedback_at = timezone.now()
        decision.save()
        if prompt is not None:
            decision.outcome = _outcome_from_feedback(decision=decision, prompt=prompt)
            decision.save(update_fields=["outcome"])
            if decision.tenant.trusted_for_learning:
                # A trusted tenant's score is evidence for the LLM that answered: routing takes it in within
                # a minute (services/evidence.py), bounded by the tenant's cap.
                evidence_record(
                    llm=decision.llm,
                    prompt=prompt,
                    score=decision.quality_score,
                    source=SOURCE_FEEDBACK,
                    tenant=decision.tenant,
                    decision=decision,
                )
        DecisionFeedback.objects.create(
            decision=decision,
            api_key=api_key,
            counted_usd=decision.reserved_usd + decision.overage_usd,
            **given,
        )
    return FeedbackResult(decision, [*notes, *([floor_note] if floor_note else [])])


def _reported_cost(decision: Decision) -> Decimal | None:
    """What the feedback says the call cost: the actual cost, else the LLM's prices × the reported
    tokens (the counted prompt tokens or the expected output tokens standing in for a missing count);
    None while no cost was reported."""
    if decision.actual_cost_usd is not None:
        return budgets.usd(decision.actual_cost_usd)
    if decision.input_tokens is None and decision.output_tokens is None:
        return None
    cost = decision.llm.expected_cost_usd(
        input_tokens=decision.input_tokens if decision.input_tokens is not None else decision.prompt_tokens,
        output_tokens=decision.output_tokens
        if decision.output_tokens is not None
        else settings.ROUTERHUB_EXPECTED_OUTPUT_TOKENS,
    )
    if cost is None:
        return None
    limit = settings.ROUTERHUB_FEEDBACK_MAX_COST_USD
    if cost > limit:
        name = "output_tokens" if decision.output_tokens is not None else "input_tokens"
        raise InvalidFeedback(
            name, f"At {decision.llm.name}'s prices these tokens would cost {cost:.6g} USD, more than {limit:g} USD."
        )
    return budgets.usd(cost)


def prompt_floor_usd(decision: Decision) -> Decimal:
    """What the prompt tokens routerhub counted cost at the LLM's prices (its per-query price, if it
    has one): the least a decision can count, whatever feedback says."""
    cost = decision.llm.expected_cost_usd(input_tokens=decision.prompt_tokens, output_tokens=0)
    return Decimal(0) if cost is None else budgets.usd(cost)


def _counted_cost(decision: Decision) -> tuple[Decimal, str | None]:
    """What the decision counts in its budget, and a note when the reported cost was raised to the floor."""
    reported = decision.reported_cost_usd
    if reported is None:
        return decision.estimated_cost_usd, None
    floor = prompt_floor_usd(decision)
    if reported >= floor:
        return reported, None
    return floor, (
        f"The reported cost, {reported.normalize():f} USD, is below what the {decision.prompt_tokens} prompt tokens "
        f"routerhub counted cost at {decision.llm.name}'s prices: {floor.normalize():f} USD is recorded instead."
    )


def _score_change_note(decision: Decision, changed: dict) -> list[str]:
    if "quality_score" not in changed or decision.quality_score is None:
        return []
    return [
        f"quality_score changed from {decision.quality_score:g} to {changed['quality_score']:g}; "
        "every score reported is kept in feedback.history."
    ]


def routed_prompt(decision: Decision) -> Prompt:
    """The decision's routed text as a registry prompt (embedded) of :data:`PROMPT_SET`: where feedback
    and judges' verdicts on routed calls are recorded."""
    return prompt_record(
        prompt_set_name=PROMPT_SET,
        prompt_set_description="Routed prompts with quality feedback from API clients or judges' verdicts.",
        source="POST /api/v1/route/{id}/feedback",
        text=decision.routed_text,
        embed=lambda text: embed_cached(embeddable(text), tenant_id=decision.tenant_id)[0],
        metadata={"tenant": decision.tenant.name, "decision": str(decision.id)},
    )


def _outcome_from_feedback(*, decision: Decision, prompt: Prompt) -> Outcome:
    """The outcome of the routed LLM on the routed prompt: the mean of the latest score of every decision
    that routed this text to this LLM (any tenant's), so one decision's feedback is one vote and never
    silently replaces what others reported."""
    details = {
        "source": Outcome.Source.FEEDBACK,
        "cost_usd": float(decision.actual_cost_usd) if decision.actual_cost_usd is not None else None,
        "latency_ms": decision.latency_ms,
        "input_tokens": decision.input_tokens,
        "output_tokens": decision.output_tokens,
    }
    outcome, _ = Outcome.objects.get_or_create(
        llm=decision.llm, prompt=prompt, defaults={"score": decision.quality_score, **details}
    )
    outcome = Outcome.objects.select_for_update().get(id=outcome.id)  # concurrent feedback: one mean at a time
    voters = Decision.objects.filter(outcome=outcome, quality_score__isnull=False).exclude(id=decision.id)
    votes = voters.count()
    mean = voters.aggregate(mean=Avg("quality_score"))["mean"] or 0.0
    outcome.score = (mean * votes + decision.quality_score) / (votes + 1)
    for name, value in details.items():
        setattr(outcome, name, value)
    outcome.save()
    return outcome
