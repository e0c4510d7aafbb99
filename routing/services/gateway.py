"""The gateway's writes: a call's decision before the LLM is called, its fallbacks, and what it cost.

A gateway call is a decision like any other (``services/decisions.py`` makes it, with the same
reservation) whose spend routerhub measures itself:

1. :func:`gateway_plan` — before the call: route (``routerhub-auto``, a preset) or take the named LLM,
   reserve the most the call can cost — every token sent (``routing/gateway/requests.py``) and the
   output its ``max_tokens`` allows × ``n`` — at the prices of the fields it sets, and list the
   candidates in the order they will be tried.
2. :func:`gateway_fall_back` — the upstream failed before its first byte: move the decision, and its
   reservation, to the next candidate if that still fits the budget.
3. :func:`gateway_finish` — after the call: replace the reservation by what the call is charged
   (:func:`metered_cost`: each attempt the upstream may bill, its tokens × its LLM's prices), record
   attempts, latency, time to first token and status, and keep the text if the tenant asked for it.

How far concurrent calls can take spend past a budget is bounded: every admitted call held its
reservation within the limit, so the overshoot is at most the sum, over the calls in flight when the
budget ran out, of (actual cost − reservation) — nothing from metering, which holds each attempt's
prompt and answer to what the call reserved (:func:`attempt_charge`; docs/gateway-and-budgets.md, *Metering and the
budget bound*). A call whose process died before it finished keeps its reservation (its estimated
cost) as what it counts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from decimal import Decimal
from uuid import UUID

from django.conf import settings
from django.db import transaction
from psycopg.types.json import Jsonb

from registry.tokens import count_tokens
from routing.exceptions import FieldNotAccepted, InvalidRouteRequest
from routing.models import Decision, GatewayExchange, Tenant
from routing.prompt_text import ChatInput
from routing.selectors.gateway import ModelTarget
from routing.selectors.routers import RoutableLLM
from routing.services import budgets
from routing.services.budget_leases import LeasedCall, return_leases
from routing.services.decisions import Candidate, GiveBack, direct_create, route_create
from routing.services.scoring import RouteRequest
from routing.upstream.http import redact
from routing.upstream.streams import usage_tokens

# Characters of request and response text kept per call for tenants that turned text logging on.
LOG_TEXT_CHARS = 20_000


@dataclass(frozen=True)
class RoutingOptions:
    """The request's ``routerhub`` object (validated like /api/v1/route's options)."""

    models: list[str] | None = None
    lam: float | None = None
    quality_target: float | None = None
    max_cost_usd: float | None = None
    strategy: str | None = None

    def given(self) -> bool:
        return any(value is not None for value in self.__dict__.values())


@dataclass(frozen=True)
class GatewayPlan:
    decision_id: UUID
    tenant: str
    log_text: bool
    candidates: list[Candidate]  # the chosen LLM first, then the fallbacks, at most the attempts allowed
    notes: list[str] = field(default_factory=list)
    # How long each part took (ms), for the answer's Server-Timing; embed and route only when routed.
    embed_ms: float = 0.0
    route_ms: float = 0.0
    budget_ms: float = 0.0
    embedding_cached: str = ""
    # What the decision was made with (a trace's attributes): None when the client named the LLM.
    strategy: str = ""
    state_version: int | None = None
    cluster: int | None = None
    lam: float | None = None
    # Admitted against this process's budget lease: the decision still has to be written
    # (routing/gateway/settlement.py).
    leased: LeasedCall | None = None
    shadow_share: float = 0.0  # of the tenant's answered calls, also judged against a comparison LLM
    tenant_id: int | None = None


def gateway_plan(
    *,
    tenant: Tenant,
    api_key,
    target: ModelTarget,
    text: str,
    input_tokens: int,
    output_tokens: int | None,
    options: RoutingOptions,
    expected_output_tokens: int | None = None,
    fields: tuple[str, ...] = (),
    give_back: GiveBack = return_leases,
) -> GatewayPlan:
    """Decide and reserve before the call; raises what ``route_create`` raises (400, 402, 503).

    ``output_tokens`` is reserved (the most the call can write); routing weighs the cost of
    ``expected_output_tokens``. ``fields``: what the body sets that bills beyond token prices: only
    LLMs that accept them are candidates (a 400 naming the field when none does), reserved and
    metered at their prices. ``give_back``: what to do with the budget leases the call took out of
    this process's book (``decisions._decide``)."""
    if target.routed:
        preset = target.preset
        # The request's λ or quality target replaces the preset's (both: they are one choice).
        own_choice = options.lam is not None or options.quality_target is not None
        request = RouteRequest(
            text=text,
            input_tokens=input_tokens,
            models=options.models,
            lam=options.lam if own_choice or preset is None else preset.lam,
            quality_target=options.quality_target if own_choice or preset is None else preset.quality_target,
            max_cost_usd=options.max_cost_usd
            if options.max_cost_usd is not None or preset is None
            else preset.max_cost_usd,
            strategy=options.strategy,
            output_tokens=output_tokens,
            expected_output_tokens=expected_output_tokens,
            preset=preset.name if preset else None,
            preset_llm_ids=preset.llm_ids if preset else None,
            source=Decision.Source.GATEWAY,
            fields=fields,
        )
        result = route_create(tenant=tenant, api_key=api_key, request=request, give_back=give_back)
    else:
        if options.given():
            raise InvalidRouteRequest(
                "routerhub", "Routing options apply to routerhub-auto models; this request names its LLM."
            )
        llm = target.llm.priced_for(fields)
        if llm is None:
            refused = target.llm.unaccepted(fields)
            raise FieldNotAccepted(
                refused[0],
                f"{target.llm.name} does not accept {', '.join(f'`{f}`' for f in refused)}: it changes what the "
                "provider bills beyond the LLM's token prices, and the LLM's metadata must list it under "
                "`gateway_fields`, with its prices, for routerhub to pass it on.",
            )
        request = RouteRequest(
            text=text, input_tokens=input_tokens, output_tokens=output_tokens, source=Decision.Source.GATEWAY
        )
        started = time.perf_counter()
        result = direct_create(tenant=tenant, api_key=api_key, llm=llm, request=request, give_back=give_back)
        result.budget_ms = (time.perf_counter() - started) * 1e3
    # The LLMs as this call is billed (their prices for its fields): what metering multiplies usage by.
    chosen = Candidate(
        llm=result.llm.priced_for(fields),
        estimated_cost_usd=result.decision.estimated_cost_usd,
        predicted_quality=result.decision.predicted_quality,
    )
    callable_fallbacks = [
        Candidate(c.llm.priced_for(fields), c.estimated_cost_usd, c.predicted_quality)
        for c in result.fallbacks
        if c.llm.api_base
    ]
    return GatewayPlan(
        decision_id=result.decision.id,
        tenant=tenant.name,
        log_text=tenant.log_gateway_text,
        candidates=[chosen, *callable_fallbacks][: settings.ROUTERHUB_GATEWAY_MAX_ATTEMPTS],
        notes=result.notes,
        embed_ms=result.embed_ms,
        route_ms=result.route_ms,
        budget_ms=result.budget_ms,
        embedding_cached=result.embedding_cached,
        strategy=result.decision.strategy,
        state_version=result.decision.state_version,
        cluster=result.decision.cluster,
        lam=result.decision.lambda_used,
        leased=result.leased,
        shadow_share=tenant.shadow_share,
        tenant_id=tenant.id,
    )


def gateway_fall_back(*, decision_id: UUID, candidate: Candidate) -> bool:
    """Move the decision and its reservation to ``candidate``; False when its estimate no longer fits."""
    with transaction.atomic():
        decision = Decision.objects.select_for_update().get(id=decision_id)
        if decision.call_status != Decision.CallStatus.PENDING:
            return False  # already finished (the client left): nothing moves any more
        if not budgets.move_reservation(decision=decision, amount=candidate.estimated_cost_usd):
            return False
        decision.llm_id = candidate.llm.id
        decision.estimated_cost_usd = candidate.estimated_cost_usd
        decision.predicted_quality = candidate.predicted_quality
        decision.save(update_fields=["llm", "estimated_cost_usd", "predicted_quality", "reserved_usd"])
    return True


class Billing:
    """What an attempt may be billed by its upstream — which decides what it is charged."""

    NONE = "none"  # no upstream took the request, or it refused it (4xx; 5xx but 504 and 524)
    SEEN = "seen"  # its answer, whole or cut short by the upstream: the tokens routerhub received
    # Sent, then cut off by routerhub (timeout, deadline, size cap; a proxy's 504/524) or left by the
    # client before the answer came: the provider may have produced the whole answer.
    UNSEEN = "unseen"


@dataclass(frozen=True)
class MeteredCall:
    cost_usd: Decimal
    input_tokens: int | None
    output_tokens: int | None


NOT_CHARGED = MeteredCall(cost_usd=Decimal(0), input_tokens=None, output_tokens=None)


@dataclass
class CallRecord:
    """What the gateway saw of one call, from its first attempt to its last byte."""

    status: str
    attempts: list[dict]
    latency_ms: float
    billing: str = Billing.NONE  # of the last attempt (see Billing)
    ttft_ms: float | None = None
    usage: dict | None = None  # the upstream's, when it sent one
    answer_text: str = ""  # what the client received (counted when usage is missing)
    request_body: dict | None = None  # kept only when the tenant logs text
    secrets: tuple[str, ...] = ()  # the upstream's key: removed from any text that is kept
    # The output the call reserved, which is the most its upstream may bill: the max_tokens sent × n,
    # and a prediction's tokens (None: no bound known).
    output_limit: int | None = None
    charges: list[MeteredCall] = field(default_factory=list)  # earlier attempts an upstream may bill


def attempt_charge(
    *,
    llm: RoutableLLM | None,
    billing: str,
    prompt: ChatInput,
    output_limit: int | None,
    usage: dict | None = None,
    answer_text: str = "",
) -> MeteredCall:
    """What one attempt is charged, at the prices of its ``llm`` (docs/gateway-and-budgets.md, *What a call is charged*):

    - ``Billing.NONE``: nothing.
    - the prompt: the upstream's ``prompt_tokens``, but at least routerhub's exact count of the
      messages' text and the chat framing (``prompt.text``), and at most the input the call reserved
      (``prompt.most``: that, every other string sent — tool definitions, schemas, … which a provider
      renders its own way — and the ceilings of the media parts, which it bills at its own rates);
      without a count from the upstream, all the input reserved;
    - the answer: the upstream's ``completion_tokens`` or routerhub's count of the text received,
      whichever is larger, but at most ``output_limit``, the output the call reserved — and for
      ``Billing.UNSEEN`` all of it, since the provider may have produced it.

    So an upstream reporting less than it was sent does not make a call cheaper, one reporting absurd
    usage does not make it dearer than its reservation, and a call cut off before its answer was seen
    is charged what the provider may have produced.
    """
    if billing == Billing.NONE or llm is None:
        return NOT_CHARGED
    reported_in, reported_out = usage_tokens(usage)
    used_in = prompt.most if reported_in is None else min(max(reported_in, prompt.text), prompt.most)
    counted_out = count_tokens([answer_text])[0] if answer_text else 0
    used_out = max(reported_out or 0, counted_out)
    if output_limit is not None:
        used_out = output_limit if billing == Billing.UNSEEN else min(used_out, output_limit)
    price = llm.expected_cost_usd(input_tokens=used_in, output_tokens=used_out)
    return MeteredCall(cost_usd=budgets.usd(price or 0.0), input_tokens=used_in, output_tokens=used_out)


def metered_cost(*, record: CallRecord, llm: RoutableLLM | None, prompt: ChatInput) -> MeteredCall:
    """What a call cost: the charge of its last attempt (:func:`attempt_charge`, at the prices of
    ``llm``, the LLM of that attempt — a fallback's, when the first choice failed) plus the charges
    of earlier attempts an upstream may bill (``record.charges``)."""
    last = attempt_charge(
        llm=llm,
        billing=record.billing,
        prompt=prompt,
        output_limit=record.output_limit,
        usage=record.usage,
        answer_text=record.answer_text,
    )
    return total_charge([*record.charges, last])


def total_charge(charges: list[MeteredCall]) -> MeteredCall:
    """Charges added up (tokens too: each attempt's are billed); nothing charged stays nothing."""
    charged = [charge for charge in charges if charge.input_tokens is not None]
    if not charged:
        return NOT_CHARGED
    return MeteredCall(
        cost_usd=sum((charge.cost_usd for charge in charged), Decimal(0)),
        input_tokens=sum(charge.input_tokens for charge in charged),
        output_tokens=sum(charge.output_tokens or 0 for charge in charged),
    )


def gateway_finish(*, decision_id: UUID, record: CallRecord, metered: MeteredCall, log_text: bool) -> MeteredCall:
    """Replace the decision's reservation by what the call cost (``metered``, see :func:`metered_cost`),
    and record the call. Only once: a decision already finished is left as it is (what was recorded
    first stands)."""
    fields = {
        "call_status": record.status,
        "attempts": Jsonb(record.attempts),
        "latency_ms": round(record.latency_ms, 3),
        "ttft_ms": None if record.ttft_ms is None else round(record.ttft_ms, 3),
        "input_tokens": metered.input_tokens,
        "output_tokens": metered.output_tokens,
        "actual_cost_usd": metered.cost_usd,
    }
    # The metering record's commit does not wait for the disk: if the database crashes before it is
    # flushed, the decision keeps its reservation — the estimate, an upper bound when max_tokens is
    # set — as what it counts (docs/gateway-and-budgets.md, *Metering and the budget bound*).
    if log_text and record.request_body is not None:
        with transaction.atomic():
            budgets.commit_without_waiting_for_disk()
            finished = budgets.reconcile_pending(decision_id=decision_id, cost_usd=metered.cost_usd, fields=fields)
            if finished:
                GatewayExchange.objects.create(
                    decision_id=decision_id,
                    request=_bounded(record.request_body),
                    response_text=redact(record.answer_text, *record.secrets, limit=LOG_TEXT_CHARS),
                )
    else:  # one statement, committed in one round trip: the budget row is locked only inside the database
        finished = budgets.reconcile_pending_committed(
            decision_id=decision_id, cost_usd=metered.cost_usd, fields=fields
        )
    if not finished:  # finished before (the client left and its clean-up ran first): that record stands
        decision = Decision.objects.get(id=decision_id)
        return MeteredCall(decision.actual_cost_usd or Decimal(0), decision.input_tokens, decision.output_tokens)
    return metered


def _bounded(body: dict) -> dict:
    """The request as sent, or — when its JSON is longer than the log keeps — its first characters."""
    limit = LOG_TEXT_CHARS
    text = json.dumps(body, ensure_ascii=False)
    return body if len(text) <= limit else {"truncated": text[:limit]}


def demo_llms_at(*, dataset: str, api_base: str, previous: str | None = None) -> int:
    """Point the LLMs with outcomes in ``dataset`` at a demo upstream (``make run``), each under its own
    name: those without an api_base, or still at the ``previous`` demo upstream. An LLM given an
    endpoint of its own keeps it. Returns how many were changed."""
    from django.db.models import Exists, OuterRef, Q
    from django.utils import timezone

    from registry.models import LLM, Outcome

    in_dataset = Outcome.objects.filter(llm=OuterRef("pk"), prompt__prompt_set__name=dataset)
    ours = Q(api_base="") | Q(api_base=api_base) | (Q(api_base=previous) if previous else Q(pk__in=[]))
    changed = 0
    for llm in LLM.objects.filter(Exists(in_dataset)).filter(ours):
        if llm.api_base != api_base or llm.api_model != llm.name:
            llm.api_base, llm.api_model, llm.updated_at = api_base, llm.name, timezone.now()
            llm.save(update_fields=["api_base", "api_model", "updated_at"])
            changed += 1
    return changed


DEMO_PRESETS = {
    "cheap": {"lambda_value": 3000.0, "description": "λ = 3000: cost first"},
    "balanced": {"lambda_value": 300.0, "description": "λ = 300: a point of predicted quality is worth 0.003 USD"},
    "best": {"lambda_value": 0.0, "description": "λ = 0: the best predicted quality, whatever it costs"},
}


def demo_presets(*, tenant: Tenant) -> None:
    """Presets cheap, balanced and best for the demo tenant (created once; edits in the admin are kept)."""
    from routing.models import Preset

    for name, fields in DEMO_PRESETS.items():
        Preset.objects.get_or_create(tenant=tenant, name=name, defaults=fields)
