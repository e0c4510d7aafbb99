"""Shadow evaluation: is routing saving money without losing quality, on the tenant's own traffic?

For a share of a tenant's answered gateway calls (``Tenant.shadow_share``), routerhub asks a
comparison LLM the same conversation and has a judge compare the two answers (pairwise, asked in
both orders). All of it happens after the client has its answer, off the response path, and the web
process does as little of it as it can — what is chosen and called is the worker's:

1. :func:`picked` — in the gateway, on the event loop: whether a call is shadowed, from its decision
   id alone (a stable hash against the share: no query, no randomness to replay).
2. :func:`shadow_offer` — on the gateway's shadow thread, once the call is metered: one ``INSERT`` of
   a pending :class:`~routing.models.ShadowEvaluation` holding what cannot be had later (the
   conversation with the options the comparison call repeats, the routed answer and its cost) — no
   other query, and no message to the broker. Nothing is written while the tenant's shadow budget is
   spent or no judge is named for it (:func:`shadow_open`, read once per ``OPEN_RECHECK_SECONDS``).
3. :func:`shadow_send_due` — the periodic sweep ``routing.send_shadow_evaluations`` (every 10 s): sends
   the task ``routing.shadow_evaluate`` of each new evaluation, and again of each still running
   ``RESEND_AFTER_SECONDS`` after it was sent (a broker that was unreachable, a lost message).
4. :func:`shadow_evaluation_run` — in the worker (the task takes the row's id): choose the shadow
   budget, the judge and the comparison LLM (the tenant's, else routing's choice at λ = 0 — when that
   is the routed LLM, a tie at no cost), reserve the most the comparison and the judge can cost in the
   shadow budget, call the comparison LLM once, judge, and settle the budget to what was spent. Then
   the texts are emptied unless the tenant logs its gateway text.

Shadow spend comes from a :class:`~routing.models.ShadowBudget` set by staff — the tenant's own, else
the global one — never from the tenant's budget. Its reservation is a conditional ``UPDATE`` (spent +
estimate ≤ limit), so concurrent evaluations cannot take it past its limit by more than what the
judge reports beyond its own estimate; once it no longer fits, evaluations end as ``no_budget``
without a call, and once it is spent no further call is offered.

Safe to deliver twice: a delivery claims the row under a row lock, and for ``CLAIM_SECONDS`` (the
task's hard time limit) no other delivery touches it; the comparison LLM is called only after
``comparison_started_at`` is committed, and a later delivery finding it set without an answer (a worker
that died during the call) fails the evaluation instead of calling again — its reservation stays
spent, the upper bound of what that call may have cost.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from registry.models import LLM
from registry.tokens import count_tokens
from routing.caches import process_cache
from routing.exceptions import InvalidRouteRequest, NoActiveRoutingState, RoutingError
from routing.models import ShadowBudget, ShadowEvaluation, Tenant
from routing.profiling.client import ChatClient, Completion, ProviderError, TransientProviderError
from routing.services.budgets import usd
from routing.services.evidence import evidence_record
from routing.services.feedback import routed_prompt
from routing.services.previews import route_preview
from routing.upstream.credentials import CredentialError, llm_api_key

logger = logging.getLogger(__name__)
Status = ShadowEvaluation.Status
Verdict = ShadowEvaluation.Verdict
TASK_NAME = "routing.shadow_evaluate"
# The request's options the comparison call is sent with: its sampling, and what shapes the answer (tools,
# a response format), so that the two answers are to the same question; the rest (fields billed beyond
# tokens, n, streaming) is not repeated.
COMPARISON_OPTIONS = ("temperature", "top_p", "seed", "stop", "tools", "tool_choice", "response_format")
_SAMPLING_BUCKETS = 1_000_000
# What a judge call is reserved for beyond the texts it quotes: its instructions, and its answer.
JUDGE_TEMPLATE_TOKENS = 600
JUDGE_MAX_TOKENS = 512
# max_tokens of a comparison call when the client asked for more or named none: a comparison needs an
# answer long enough to judge, and the shadow budget bounds what the calls cost in all.
COMPARISON_MAX_TOKENS = 1024
# How long a web process trusts what it read of a tenant's shadow budget and judge (shadow_open).
OPEN_RECHECK_SECONDS = 10.0
# A delivery holds the evaluation it claimed this long — the task's hard time limit, after which no
# delivery of it can still be running; another delivery meanwhile leaves it alone.
CLAIM_SECONDS = 6 * 60
# The sweep sends again an evaluation still running this long after its task was last sent, and sends
# at most SEND_BATCH tasks a run (it runs every 10 s: the rest go at the next).
RESEND_AFTER_SECONDS = 60
SEND_BATCH = 5000


def picked(*, decision_id: UUID, share: float) -> bool:
    """Whether the call of ``decision_id`` is shadowed: a stable draw, so a replay picks the same calls."""
    if share <= 0:
        return False
    return decision_id.int % _SAMPLING_BUCKETS < share * _SAMPLING_BUCKETS


# --- offering a call (gateway, shadow thread) --------------------------------------------------------


def budget_for(*, tenant_id: int) -> ShadowBudget | None:
    """The shadow budget paying for ``tenant_id``'s shadow calls: its own, else the global one."""
    budgets = ShadowBudget.objects.filter(Q(tenant_id=tenant_id) | Q(tenant__isnull=True))
    return budgets.order_by(F("tenant_id").asc(nulls_last=True)).first()


_open = process_cache("shadow-open")


def shadow_open(*, tenant_id: int) -> bool:
    """Whether ``tenant_id``'s calls may be offered now: its shadow budget has money left and a judge is
    named for it. Read at most once per ``OPEN_RECHECK_SECONDS`` per process, so an offer costs no query
    of its own; what changes meanwhile is caught by the worker (an offer it cannot run ends without a call)."""
    now = time.monotonic()
    known = _open.get(tenant_id)
    if known is not None and now - known[0] < OPEN_RECHECK_SECONDS:
        return known[1]
    budget = budget_for(tenant_id=tenant_id)
    tenant = Tenant.objects.filter(id=tenant_id).values("shadow_judge_llm_id").first()
    is_open = (
        budget is not None
        and budget.spent_usd < budget.limit_usd
        and tenant is not None
        and bool(tenant["shadow_judge_llm_id"] or settings.ROUTERHUB_JUDGE_LLM)
    )
    _open.set(tenant_id, (now, is_open))
    return is_open


def shadow_offer(
    *,
    decision_id: UUID,
    tenant_id: int,
    routed_llm_id: int,
    routed_cost_usd: Decimal,
    upstream_body: dict,
    routed_text: str,
) -> bool:
    """Record an answered, picked call for evaluation: one ``INSERT`` of a pending row holding what
    cannot be had later (the conversation, the routed answer). Its task is sent by the sweep
    (:func:`shadow_send_due`), and everything else (the comparison LLM, the judge, the budget) is the
    worker's. False when the tenant's shadowing is not open."""
    if not shadow_open(tenant_id=tenant_id):
        return False
    ShadowEvaluation.objects.create(
        decision_id=decision_id,
        tenant_id=tenant_id,
        routed_llm_id=routed_llm_id,
        routed_cost_usd=routed_cost_usd,
        request=comparison_request(upstream_body),
        routed_text=routed_text,
    )
    return True


def judge_for(tenant: Tenant) -> LLM | None:
    if tenant.shadow_judge_llm_id:
        return LLM.objects.filter(id=tenant.shadow_judge_llm_id, is_active=True).exclude(api_base="").first()
    name = settings.ROUTERHUB_JUDGE_LLM
    return LLM.objects.filter(name=name, is_active=True).exclude(api_base="").first() if name else None


def comparison_for(*, tenant: Tenant, prompt: str) -> LLM | None:
    """The tenant's comparison LLM, or else the allowed candidate of best predicted quality for the
    call's prompt (``prompt``: the text it was routed on): what routing chooses for it at λ = 0 (scored
    as *Try it* scores, nothing written). Only an LLM routerhub can call."""
    if tenant.shadow_comparison_llm_id:
        chosen = LLM.objects.filter(id=tenant.shadow_comparison_llm_id)
    else:
        try:
            best = route_preview(tenant=tenant, prompt=prompt, lam=0.0).chosen
        except (RoutingError, NoActiveRoutingState, InvalidRouteRequest):
            return None
        chosen = LLM.objects.filter(name=best)
    return chosen.filter(is_active=True).exclude(api_base="").first()


def comparison_request(upstream_body: dict) -> dict:
    """What the comparison LLM is sent: the conversation, the request's sampling options, tools and
    response format, and its max_tokens (at most ``COMPARISON_MAX_TOKENS``)."""
    kept = {key: upstream_body[key] for key in COMPARISON_OPTIONS if upstream_body.get(key) is not None}
    asked = upstream_body.get("max_completion_tokens") or upstream_body.get("max_tokens")
    limit = COMPARISON_MAX_TOKENS
    kept["max_tokens"] = min(asked, limit) if isinstance(asked, int) and asked > 0 else limit
    return {"messages": upstream_body.get("messages") or [], **kept}


DEMO_SHARE = 0.2
DEMO_BUDGET_USD = Decimal(1)


def demo_shadowing(*, tenant: Tenant) -> LLM | None:
    """Shadow a fifth of the demo tenant's gateway calls (``make run``), judged by the cheapest demo LLM —
    which the demo upstream answers as its demo judge, a stand-in that reads the demo data's correctness
    — and paid from a global shadow budget of 1 USD. Set once: what staff change in the admin is kept.
    Returns the judge, or None when there is no LLM to judge with."""
    if ShadowBudget.objects.filter(tenant__isnull=True).exists() or tenant.shadow_share > 0:
        return tenant.shadow_judge_llm
    judge = (
        LLM.objects.filter(is_active=True, usd_per_mtok_out__isnull=False)
        .exclude(api_base="")
        .order_by("usd_per_mtok_out", "name")
        .first()
    )
    if judge is None:
        return None
    with transaction.atomic():
        ShadowBudget.objects.create(tenant=None, limit_usd=DEMO_BUDGET_USD)
        tenant.shadow_share, tenant.shadow_judge_llm = DEMO_SHARE, judge
        tenant.save(update_fields=["shadow_share", "shadow_judge_llm", "updated_at"])
    return judge


def send(evaluation_id: UUID) -> bool:
    """Send the evaluation's task; a broker that cannot be reached leaves it pending (logged), for a
    later sweep."""
    try:
        current_app.send_task(
            TASK_NAME,
            kwargs={"evaluation_id": str(evaluation_id)},
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except Exception as exc:  # kombu raises several types for an unreachable broker
        logger.warning("could not send shadow evaluation %s to the broker: %s", evaluation_id, exc)
        return False
    return True


def shadow_send_due(*, limit: int = SEND_BATCH) -> dict[str, list[UUID]]:
    """Send the task of each evaluation not sent yet, and again of each still running (pending, or
    compared and not yet judged) ``RESEND_AFTER_SECONDS`` after its task was sent — its send failed, or
    its message was lost. The rows are locked (skipping rows another sweep holds) and marked sent in
    one transaction before their tasks are sent, so two sweeps never send one twice; a delivery that
    finds an evaluation held by another leaves it alone (:func:`shadow_claim`). Run by the periodic
    ``routing.send_shadow_evaluations`` task; safe to run at any time."""
    now = timezone.now()
    due = Q(sent_at__isnull=True) | Q(sent_at__lt=now - timedelta(seconds=RESEND_AFTER_SECONDS))
    running = ShadowEvaluation.objects.filter(due, status__in=(Status.PENDING, Status.COMPARED))
    with transaction.atomic():
        ids = list(
            running.select_for_update(skip_locked=True)
            .order_by("created_at")
            .values_list("decision_id", flat=True)[:limit]
        )
        ShadowEvaluation.objects.filter(decision_id__in=ids).update(sent_at=now)
    sent = []
    for evaluation_id in ids:
        if not send(evaluation_id):
            break  # the broker is unreachable: the rest are tried again with it, RESEND_AFTER_SECONDS on
        sent.append(evaluation_id)
    return {"sent": sent, "not_sent": ids[len(sent) :]}


# --- running an evaluation (worker) ---------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    evaluation: ShadowEvaluation
    call_comparison: bool  # False: the comparison answered already (a retry after it), judge only


def estimate_usd(evaluation: ShadowEvaluation) -> Decimal:
    """The most the comparison and the judge can cost: the conversation and max_tokens of output at
    the comparison's prices; for the judge, in each order, the conversation, both answers (the
    comparison's at its max_tokens) and its template in, and its answer's limit out, at its prices."""
    request = evaluation.request
    prompt_tokens = _conversation_tokens(request.get("messages") or [])
    most_out = int(request.get("max_tokens") or COMPARISON_MAX_TOKENS)
    comparison = evaluation.comparison_llm.expected_cost_usd(input_tokens=prompt_tokens, output_tokens=most_out)
    routed_tokens = count_tokens([evaluation.routed_text])[0] if evaluation.routed_text else 0
    judge_in = 2 * (prompt_tokens + routed_tokens + most_out + JUDGE_TEMPLATE_TOKENS)
    judge = evaluation.judge_llm.expected_cost_usd(input_tokens=judge_in, output_tokens=2 * JUDGE_MAX_TOKENS)
    return usd((comparison or 0.0) + (judge or 0.0))


def _conversation_tokens(messages: list) -> int:
    """Tokens of the conversation as OpenAI bills a chat: 3 per message of framing, and 3 more."""
    texts = [_text_of(message) for message in messages]
    return 3 + sum(3 + n for n in count_tokens(texts))


def _text_of(message) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def shadow_claim(*, evaluation_id: UUID) -> Claimed | None:
    """Take an evaluation for this delivery; None when there is nothing (more) to do, or another
    delivery holds it (claimed less than ``CLAIM_SECONDS`` ago).

    A first delivery chooses what the evaluation needs (:func:`_choose`), reserves its estimate in the
    shadow budget and marks the comparison started, committed before the call. Without room in the
    budget it ends as ``no_budget``."""
    now = timezone.now()
    with transaction.atomic():
        evaluation = (
            ShadowEvaluation.objects.select_for_update(of=("self",))
            .select_related("comparison_llm", "judge_llm", "tenant", "decision")
            .filter(decision_id=evaluation_id)
            .first()
        )
        if evaluation is None or evaluation.status not in (Status.PENDING, Status.COMPARED):
            return None
        if evaluation.claimed_at is not None and now - evaluation.claimed_at < timedelta(seconds=CLAIM_SECONDS):
            return None  # another delivery may be calling right now (a resent or redelivered task)
        evaluation.claimed_at = now
        if evaluation.status == Status.COMPARED:
            evaluation.save(update_fields=["claimed_at"])
            return Claimed(evaluation, call_comparison=False)
        if evaluation.comparison_started_at is not None:
            # An earlier delivery called the comparison LLM and never recorded its answer: never again.
            _end(evaluation, Status.FAILED, error="the worker stopped during the comparison call; not asked twice")
            return None
        if evaluation.comparison_llm_id is None and not _choose(evaluation):
            return None
        estimate = estimate_usd(evaluation)
        reserved = ShadowBudget.objects.filter(
            id=evaluation.budget_id, spent_usd__lte=F("limit_usd") - estimate
        ).update(spent_usd=F("spent_usd") + estimate, updated_at=now)
        if not reserved:
            _end(evaluation, Status.NO_BUDGET, error=f"the shadow budget has less than the {estimate} USD it needs")
            return None
        evaluation.reserved_usd = estimate
        evaluation.comparison_started_at = now
        evaluation.save(update_fields=["claimed_at", "reserved_usd", "comparison_started_at"])
    return Claimed(evaluation, call_comparison=True)


def _choose(evaluation: ShadowEvaluation) -> bool:
    """Give a new evaluation (locked by the caller) its shadow budget, judge and comparison LLM; False
    when it ended instead: no budget with money left, no judge or comparison LLM routerhub can call, or
    the comparison LLM is the routed one — the same answer, a tie at no cost."""
    tenant = evaluation.tenant
    budget = budget_for(tenant_id=tenant.id)
    if budget is None or budget.spent_usd >= budget.limit_usd:
        _end(evaluation, Status.NO_BUDGET, error="no shadow budget with money left pays for this tenant")
        return False
    evaluation.budget = budget
    judge = judge_for(tenant)
    if judge is None:
        _end(evaluation, Status.FAILED, error="no judge LLM routerhub can call (the tenant's, or ROUTERHUB_JUDGE_LLM)")
        return False
    evaluation.judge_llm = judge
    comparison = comparison_for(tenant=tenant, prompt=evaluation.decision.routed_text)
    if comparison is None:
        _end(evaluation, Status.FAILED, error="no comparison LLM routerhub can call for this prompt")
        return False
    evaluation.comparison_llm = comparison
    if comparison.id == evaluation.routed_llm_id:
        evaluation.verdict, evaluation.score, evaluation.judge_detail = Verdict.TIE, 0.5, {"same_llm": True}
        evaluation.comparison_cost_usd, evaluation.judge_cost_usd = evaluation.routed_cost_usd, Decimal(0)
        _end(evaluation, Status.JUDGED)
        return False
    evaluation.save(update_fields=["budget", "judge_llm", "comparison_llm"])
    return True


def shadow_compared(*, evaluation: ShadowEvaluation, text: str, cost_usd: Decimal) -> None:
    ShadowEvaluation.objects.filter(decision_id=evaluation.decision_id, status=Status.PENDING).update(
        status=Status.COMPARED, comparison_text=text, comparison_cost_usd=cost_usd
    )
    evaluation.status, evaluation.comparison_text, evaluation.comparison_cost_usd = Status.COMPARED, text, cost_usd


def shadow_judged(
    *, evaluation: ShadowEvaluation, verdict: str, score: float | None, judge_cost_usd: Decimal, detail: dict
) -> None:
    """Record the verdict and settle the shadow budget to what the comparison and the judge cost."""
    with transaction.atomic():
        locked = ShadowEvaluation.objects.select_for_update().get(decision_id=evaluation.decision_id)
        if locked.status != Status.COMPARED:
            return
        locked.verdict, locked.score, locked.judge_cost_usd, locked.judge_detail = (
            verdict,
            score,
            judge_cost_usd,
            detail,
        )
        _end(locked, Status.JUDGED, spent=(locked.comparison_cost_usd or Decimal(0)) + judge_cost_usd)


def shadow_failed(*, evaluation_id: UUID, error: str, spent: Decimal | None = None) -> None:
    """End an evaluation that cannot go on; ``spent``: what its calls cost (None: keep the reservation)."""
    with transaction.atomic():
        locked = ShadowEvaluation.objects.select_for_update().filter(decision_id=evaluation_id).first()
        if locked is not None and locked.status in (Status.PENDING, Status.COMPARED):
            _end(locked, Status.FAILED, error=error[:2000], spent=spent)


def _end(evaluation: ShadowEvaluation, status: str, *, error: str = "", spent: Decimal | None = None) -> None:
    """Finish the row (inside the caller's transaction) with what was chosen for it: the reservation
    replaced by ``spent`` (None: kept as spent), the texts emptied unless the tenant logs its gateway text."""
    if spent is not None and evaluation.reserved_usd:
        ShadowBudget.objects.filter(id=evaluation.budget_id).update(
            spent_usd=F("spent_usd") - evaluation.reserved_usd + spent, updated_at=timezone.now()
        )
        evaluation.reserved_usd = Decimal(0)
    evaluation.status, evaluation.error, evaluation.finished_at = status, error, timezone.now()
    fields = ["status", "error", "finished_at", "reserved_usd", "verdict", "score", "judge_cost_usd", "judge_detail"]
    fields += ["claimed_at", "budget", "judge_llm", "comparison_llm", "comparison_cost_usd"]
    if not Tenant.objects.filter(id=evaluation.tenant_id, log_gateway_text=True).exists():
        evaluation.request, evaluation.routed_text, evaluation.comparison_text = {}, "", ""
        fields += ["request", "routed_text", "comparison_text"]
    evaluation.save(update_fields=fields)


def shadow_evaluation_run(*, evaluation_id: UUID, judge=None) -> str | None:
    """Run one evaluation to its end (the task's work); returns how it ended, None when there was
    nothing to do. ``judge``: the pairwise judge (``routing/profiling/judges.py``'s, by default)."""
    claimed = shadow_claim(evaluation_id=evaluation_id)
    if claimed is None:
        return None
    evaluation = claimed.evaluation
    if claimed.call_comparison:
        request = dict(evaluation.request)
        messages = request.pop("messages")
        try:
            client = _client(evaluation.comparison_llm, max_tokens=int(request.get("max_tokens")))
            completion = client.complete_chat(messages, **request)
        except CredentialError as exc:
            shadow_failed(evaluation_id=evaluation_id, error=f"the comparison LLM's key: {exc}", spent=Decimal(0))
            return Status.FAILED
        except ProviderError as exc:
            # A timeout or a dropped connection may still be billed: the reservation stays spent.
            billed = None if isinstance(exc, TransientProviderError) else Decimal(0)
            shadow_failed(evaluation_id=evaluation_id, error=f"the comparison LLM failed: {exc}", spent=billed)
            return Status.FAILED
        shadow_compared(evaluation=evaluation, text=completion.text, cost_usd=comparison_cost(evaluation, completion))
    try:
        judged = (judge or pairwise_judge)(
            judge_llm=evaluation.judge_llm,
            prompt=conversation_text(evaluation.request.get("messages") or []),
            answer=evaluation.routed_text,
            comparison=evaluation.comparison_text,
        )
    except ProviderError as exc:
        shadow_failed(evaluation_id=evaluation_id, error=f"the judge failed: {exc}")
        return Status.FAILED
    shadow_judged(
        evaluation=evaluation,
        verdict=judged.label,
        score=judged.score,
        judge_cost_usd=usd(judged.cost_usd),
        detail={"raw_text": judged.raw_text, "cached": judged.cached},
    )
    verdict_as_evidence(evaluation=evaluation, score=judged.score)
    return Status.JUDGED


def verdict_as_evidence(*, evaluation: ShadowEvaluation, score: float | None) -> None:
    """A trusted tenant's judged exchange teaches the router like its feedback does: the routed LLM's
    pairwise score against the comparison (win 1, tie 0.5, loss 0 — the comparison being the best-quality
    candidate, a loss says the routed LLM fell short on this prompt) becomes evidence on the routed
    prompt, from source ``judge:<judge LLM>``, capped per tenant like any source. Only for tenants
    trusted for learning: the prompt the judge reads is the tenant's own text. Idempotent (one prompt
    counts once per source, tenant and LLM), so a retried task records nothing twice."""
    decision = evaluation.decision
    if score is None or evaluation.judge_llm is None or not evaluation.tenant.trusted_for_learning:
        return
    if not decision.routed_text:
        return
    evidence_record(
        llm=evaluation.routed_llm,
        prompt=routed_prompt(decision),
        score=score,
        source=f"judge:{evaluation.judge_llm.name}",
        tenant=evaluation.tenant,
        decision=decision,
    )


def pairwise_judge(*, judge_llm: LLM, prompt: str, answer: str, comparison: str):
    """The judge's pairwise verdict on ``answer`` against ``comparison`` (asked in both orders). Its
    verdicts are cached without a graded LLM: shadow spend never counts in a profiling job's cap."""
    from routing.services.judging import judge_for_llm

    return judge_for_llm(judge_llm).pairwise(prompt=prompt, answer=answer, comparison=comparison)


def comparison_cost(evaluation: ShadowEvaluation, completion: Completion) -> Decimal:
    """What the comparison call cost: its reported tokens (else routerhub's count of the conversation and
    the answer), never more than the conversation's count and max_tokens that were reserved."""
    request = evaluation.request
    counted_in = _conversation_tokens(request.get("messages") or [])
    counted_out = count_tokens([completion.text])[0] if completion.text else 0
    used_in = counted_in if completion.input_tokens is None else min(max(completion.input_tokens, 1), counted_in)
    used_out = min(max(completion.output_tokens or 0, counted_out), int(request.get("max_tokens")))
    price = evaluation.comparison_llm.expected_cost_usd(input_tokens=used_in, output_tokens=used_out)
    return usd(price or 0.0)


def conversation_text(messages: list) -> str:
    """The conversation as the judge reads it: the one user message, or every turn with its role."""
    texts = [(message.get("role", ""), _text_of(message)) for message in messages if isinstance(message, dict)]
    if len(texts) == 1:
        return texts[0][1]
    return "\n\n".join(f"[{role}]\n{text}" for role, text in texts)


def _client(llm: LLM, *, max_tokens: int) -> ChatClient:
    # One attempt: a retried call could be answered (and billed) twice.
    return ChatClient(
        api_base=llm.api_base,
        model=llm.api_model or llm.name,
        api_key=llm_api_key(llm),
        max_tokens=max_tokens,
        timeout_seconds=settings.ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS,
        max_attempts=1,
    )
