"""One gateway call, from the parsed body to the last byte.

1. :func:`prepare` (a pool thread): authenticate the key, validate the body, route or resolve the
   named LLM, reserve the estimate, and read each candidate's key — one trip off the event loop.
2. :func:`respond` (the event loop): try the candidates in order. A connection error, a timeout
   before the first byte, 408, 429 or 5xx (or a redirect, never followed) moves the decision and its
   reservation to the next candidate that still fits the budget; any other 4xx is the request's fault
   and goes back to the client with the upstream's status and message. Every attempt is recorded:
   what failed for anyone who reads the decision, the upstream's words for staff only.
3. The answer: a JSON body with ``model`` set to the LLM's name, or a stream relayed event by event
   (``routing/upstream/streams.py``). After the first streamed byte there is no fallback: a failure
   becomes an error event in OpenAI's shape. Answers are read within a size cap, and the whole call
   ends by ``ROUTERHUB_UPSTREAM_DEADLINE_SECONDS``.
4. :func:`~routing.services.gateway.gateway_finish` (a pool thread) replaces the reservation by the
   measured cost. A JSON answer does not wait for it: its cost (usage × the answering LLM's prices,
   ``X-Routerhub-Cost-Usd``) is computed here and the record is written while the answer is sent —
   until then the decision keeps its reservation, so the budget is never under-counted. A stream's
   record is written before its ``[DONE]``. A client that disconnects cancels the upstream call; what
   it used is metered in the background, since the cancelled request can no longer wait for anything.
   What each attempt is charged — attempts cut off after the request was sent included — is
   ``services/gateway.attempt_charge``'s rule.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import partial

import httpx
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse

from routing import metrics, request_log
from routing.gateway import settlement
from routing.gateway.errors import GatewayError, from_domain
from routing.gateway.requests import ChatRequest, chat_request
from routing.gateway.threads import in_background, in_thread, off_path
from routing.models import Decision
from routing.prompt_text import ChatInput
from routing.selectors.gateway import model_target
from routing.selectors.routers import RoutableLLM
from routing.selectors.tenancy import tenant_metrics_label
from routing.services import shadow
from routing.services.decisions import Candidate
from routing.services.gateway import (
    LOG_TEXT_CHARS,
    Billing,
    CallRecord,
    GatewayPlan,
    MeteredCall,
    attempt_charge,
    gateway_fall_back,
    gateway_plan,
    metered_cost,
)
from routing.services.tenancy import api_key_authenticate_cached
from routing.throttling import FixedWindow, failed_authentication_window
from routing.upstream.addresses import UpstreamRefused
from routing.upstream.credentials import CredentialError, upstream_api_key
from routing.upstream.http import (
    GATEWAY_TIMEOUT_STATUSES,
    MAX_ANSWER_BYTES,
    MAX_ERROR_BYTES,
    REDACTED,
    AnswerTooLarge,
    BadAnswer,
    Timeouts,
    aread_bounded,
    async_client,
    auth_headers,
    chat_completions_url,
    fallback_worthy,
    plain,
    public_text,
    redact,
)
from routing.upstream.streams import DONE, EventRelay, answer_text, scrub_json, sse_event

Status = Decision.CallStatus
logger = logging.getLogger(__name__)
# Server-Timing's words for where a routed prompt's embedding came from (as /api/v1/route says them).
_EMBED_SOURCES = {"memory": "cached", "shared": "shared-cache"}
# After an upstream's [DONE], how long the end of its body is waited for (it normally came with it):
# long enough to keep the connection for the next call, too short for an upstream to hold the client.
AFTER_DONE_SECONDS = 1.0
# A JSON answer's tokens are counted on the event loop up to this length, in a pool thread beyond
# (counting is CPU work that holds up every call of the loop; the hop to a thread costs latency).
COUNT_ON_THE_LOOP_CHARS = 16384
# Shadow evaluation offers waiting for the shadow thread, at most (each holds a conversation and an answer).
SHADOW_OFFERS_WAITING = 1000
_shadow_slots = threading.BoundedSemaphore(SHADOW_OFFERS_WAITING)


@dataclass(frozen=True)
class Upstream:
    candidate: Candidate
    url: str
    api_key: str | None
    problem: str | None = None  # its key could not be had: the attempt fails without a call


@dataclass
class Prepared:
    chat: ChatRequest
    plan: GatewayPlan
    upstreams: list[Upstream]
    started: float  # perf_counter() when the request arrived
    attempts: list[dict] = field(default_factory=list)
    finishing: bool = False  # a finish was handed to the pool: it runs, whatever happens to the request
    timings: dict[str, float] = field(default_factory=dict)  # Server-Timing: ms of each phase, in order
    embedding_cached: str = ""  # "memory", "shared" or "" (computed); only for routed models
    secret: str | None = None  # the key sent to the current upstream: never passed on, stored or shown
    written: Future | None = None  # admitted against a budget lease: done once its decision is written
    llm: RoutableLLM | None = None  # the LLM of the current attempt: its prices meter the call
    charges: list[MeteredCall] = field(default_factory=list)  # failed attempts an upstream may bill
    deadline: float = math.inf  # the event loop's time by which the call ends, whatever the upstream does
    sent: bool = False  # the current attempt's request reached the upstream whole (it may bill it)

    async def trace(self, event: str, info: dict) -> None:
        """httpx's trace hook: notes when the request has been sent in full."""
        if event.endswith("send_request_body.complete"):
            self.sent = True

    def scrub(self, data: bytes) -> bytes:
        """``data`` without the upstream's key (an endpoint that echoes it must not hand it to the client)."""
        if self.secret and self.secret.encode() in data:
            return data.replace(self.secret.encode(), REDACTED.encode())
        return data

    def ms(self) -> float:
        return (time.perf_counter() - self.started) * 1e3

    def headers(self, llm_name: str) -> dict[str, str]:
        return {
            "X-Routerhub-Decision-Id": str(self.plan.decision_id),
            "X-Routerhub-Model": llm_name,
            "Server-Timing": self.server_timing(),
        }

    def server_timing(self) -> str:
        """Where the gateway's own time went (the benchmark reads it; so can anyone tuning a deployment):
        queue (waiting for a pool thread), auth, embed (routed models; desc says whether it was cached:
        the cache is per tenant, so this reveals nothing of other tenants), route, budget (reservation
        and decision row), prepare (arrival to the upstream call) and, for JSON answers, upstream (from
        there to the end of the answer; metering is written after the answer leaves)."""
        parts = []
        for name, ms in self.timings.items():
            if name == "embed":
                parts.append(f'embed;dur={ms:.3f};desc="{_EMBED_SOURCES.get(self.embedding_cached, "computed")}"')
            else:
                parts.append(f"{name};dur={ms:.3f}")
        return ", ".join(parts)


def _throttled(wait: float, what: str) -> GatewayError:
    return GatewayError(
        429,
        f"Too many requests {what}; try again in {math.ceil(wait)} s.",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(math.ceil(wait))},
    )


def prepare(*, secret: str | None, body, started: float, address: str | None = None) -> Prepared:
    """Everything before the first upstream byte that needs the database (runs in a pool thread).

    The rate limits are /api/'s (``routing/throttling.py``): per API key, and failed
    authentications per client ``address``."""
    began = time.perf_counter()
    if not secret:
        raise GatewayError(
            401,
            "Missing API key: send 'Authorization: Bearer rh_…' (the OpenAI SDK's api_key).",
            type="authentication_error",
            code="invalid_api_key",
        )
    failures = failed_authentication_window()
    if address and (wait := failures.exceeded(address)) is not None:
        raise _throttled(wait, "with unknown API keys from this address")
    api_key = api_key_authenticate_cached(secret=secret)
    if api_key is None:
        if address:
            failures.hit(address)
        raise GatewayError(401, "Unknown or revoked API key.", type="authentication_error", code="invalid_api_key")
    if (wait := FixedWindow("api_key", settings.ROUTERHUB_THROTTLE_API_KEY).hit(str(api_key.id))) is not None:
        raise _throttled(wait, "with this API key")
    chat = chat_request(body)
    tenant = api_key.tenant
    authenticated = time.perf_counter()
    try:
        target = model_target(tenant=tenant, name=chat.model)
        text, input_tokens = chat.route_input(routed=target.routed)
        plan = gateway_plan(
            tenant=tenant,
            api_key=api_key,
            target=target,
            text=text,
            input_tokens=input_tokens,
            output_tokens=chat.output_tokens,
            expected_output_tokens=chat.expected_output_tokens,
            options=chat.options,
            fields=chat.fields,
            give_back=settlement.give_back,  # on the writer thread, after what is queued against them
        )
    except GatewayError:
        raise
    except Exception as exc:
        error = from_domain(exc)
        if error is None:
            raise
        raise error from None
    prepared = Prepared(chat=chat, plan=plan, upstreams=[_upstream(c) for c in plan.candidates], started=started)
    if plan.leased is not None:
        prepared.written = settlement.write(plan.leased)  # while the LLM works on the call
    prepared.embedding_cached = plan.embedding_cached
    prepared.timings = {
        "queue": (began - started) * 1e3,
        "auth": (authenticated - began) * 1e3,
        **({"embed": plan.embed_ms, "route": plan.route_ms} if target.routed else {}),
        "budget": plan.budget_ms,
        "prepare": prepared.ms(),
    }
    return prepared


def _upstream(candidate: Candidate) -> Upstream:
    llm = candidate.llm
    try:
        key = upstream_api_key(name=llm.name, api_key_encrypted=llm.api_key_encrypted, api_key_env=llm.api_key_env)
    except CredentialError as exc:
        return Upstream(candidate=candidate, url=chat_completions_url(llm.api_base), api_key=None, problem=str(exc))
    return Upstream(candidate=candidate, url=chat_completions_url(llm.api_base), api_key=key)


async def prepare_async(*, secret: str | None, body, started: float, address: str | None = None) -> Prepared:
    """:func:`prepare` in the pool; if the client leaves meanwhile, a reservation made anyway is released."""
    task = asyncio.ensure_future(in_thread(prepare, secret=secret, body=body, started=started, address=address))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_release_if_prepared)
        raise


def _release_if_prepared(task: asyncio.Future) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    prepared = task.result()
    _finish_in_background(prepared, CallRecord(status=Status.CANCELLED, attempts=[], latency_ms=prepared.ms()))


def _submit_finish(prepared: Prepared, record: CallRecord, metered: MeteredCall | None = None):
    """Hand the call's finish to the pool, once: the first record of a call is the one kept."""
    if prepared.finishing:
        return None
    prepared.finishing = True
    _observe(prepared, record, metered)
    future = in_background(
        _meter_and_finish,
        decision_id=prepared.plan.decision_id,
        tenant=prepared.plan.tenant,
        record=record,
        llm=prepared.llm,
        prompt=prepared.chat.prompt,
        metered=metered,
        log_text=prepared.plan.log_text,
    )
    future.add_done_callback(_log_failure)
    if (
        record.status == Status.OK
        and prepared.llm is not None
        and shadow.picked(decision_id=prepared.plan.decision_id, share=prepared.plan.shadow_share)
    ):
        offer = partial(
            shadow.shadow_offer,
            decision_id=prepared.plan.decision_id,
            tenant_id=prepared.plan.tenant_id,
            routed_llm_id=prepared.llm.id,
            upstream_body=prepared.chat.upstream_body,
        )
        future.add_done_callback(partial(_offer_shadow, offer, record))
    return future


def _offer_shadow(offer, record: CallRecord, finished: Future) -> None:
    """Once the call is metered, its shadow evaluation is offered on the shadow thread: nothing of it
    runs on the event loop or delays the writer thread. When that thread is behind by
    ``SHADOW_OFFERS_WAITING`` offers (a database that does not answer), the call is not shadowed."""
    if finished.cancelled() or finished.exception() is not None:
        return
    if not _shadow_slots.acquire(blocking=False):
        return
    off_path(_offer, offer, record, finished.result().cost_usd)


def _offer(offer, record: CallRecord, cost_usd: Decimal) -> None:
    try:
        offer(routed_cost_usd=cost_usd, routed_text=redact(record.answer_text, *record.secrets, limit=LOG_TEXT_CHARS))
    except Exception:  # the call is answered and metered; only its shadow evaluation is lost
        logger.exception("offering gateway decision %s for shadow evaluation failed", offer.keywords["decision_id"])
    finally:
        _shadow_slots.release()


def _observe(prepared: Prepared, record: CallRecord, metered: MeteredCall | None) -> None:
    """The call's upstream attempts and time to first token in the metrics; its LLM (and cost, when
    known already) in the request's log line."""
    metrics.observe_attempts(record.attempts)
    if prepared.llm is not None:
        if record.ttft_ms is not None:
            metrics.observe_time_to_first_token(llm=prepared.llm.name, ms=record.ttft_ms)
        request_log.note(llm=prepared.llm.name)
    if metered is not None:
        request_log.note(cost_usd=format(metered.cost_usd.normalize(), "f"))


def _meter_and_finish(*, decision_id, tenant: str, record: CallRecord, llm, prompt: ChatInput, metered, log_text: bool):
    if metered is None:  # counting an answer's tokens is CPU work: here, off the event loop
        metered = metered_cost(record=record, llm=llm, prompt=prompt)
    written = settlement.finish(decision_id=decision_id, record=record, metered=metered, log_text=log_text)
    # tokens and spend as written (no LLM: no attempt was made, nothing spent)
    if llm is not None and metrics.enabled():
        metrics.observe_metered(
            tenant=tenant_metrics_label(name=tenant),
            llm=llm.name,
            cost_usd=written.cost_usd,
            input_tokens=written.input_tokens,
            output_tokens=written.output_tokens,
        )
    return written


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        # The decision keeps its reservation (the estimate) as what it counts.
        logger.error("metering a gateway call failed", exc_info=future.exception())


def _finish_in_background(prepared: Prepared, record: CallRecord, metered: MeteredCall | None = None) -> None:
    _submit_finish(prepared, record, metered)


async def _finish(prepared: Prepared, record: CallRecord):
    """The finish, awaited — shielded, so a client leaving meanwhile cannot stop it half-way."""
    future = _submit_finish(prepared, record)
    written = await asyncio.shield(asyncio.wrap_future(future))
    request_log.note(cost_usd=format(written.cost_usd.normalize(), "f"))
    return written


def _record(prepared: Prepared, **fields) -> CallRecord:
    return CallRecord(
        secrets=(prepared.secret,) if prepared.secret else (),
        attempts=prepared.attempts,
        latency_ms=prepared.ms(),
        request_body=prepared.chat.upstream_body if prepared.plan.log_text else None,
        output_limit=prepared.chat.output_tokens,
        charges=list(prepared.charges),
        **fields,
    )


def _charge(prepared: Prepared, llm: RoutableLLM, attempt: dict, billing: str) -> None:
    """Charge an attempt that failed after the upstream may have billed it (``Billing.UNSEEN``): the
    prompt and the output the call reserved, at ``llm``'s prices. No text to count: cheap enough here."""
    if billing == Billing.NONE:
        return
    charge = attempt_charge(
        llm=llm, billing=billing, prompt=prepared.chat.prompt, output_limit=prepared.chat.output_tokens
    )
    prepared.charges.append(charge)
    attempt["charged_usd"] = float(charge.cost_usd)


def _with_charges(candidate: Candidate, charges: list[MeteredCall]) -> Candidate:
    """``candidate`` with what earlier attempts are charged added to its estimate: the reservation a
    fallback needs, since those charges stay."""
    charged = sum((charge.cost_usd for charge in charges), Decimal(0))
    return replace(candidate, estimated_cost_usd=candidate.estimated_cost_usd + charged) if charged else candidate


def _deadline_passed() -> str:
    return (
        f"no complete answer within the call's deadline of {settings.ROUTERHUB_UPSTREAM_DEADLINE_SECONDS:g} s (timeout)"
    )


@dataclass
class Attempt:
    """One candidate tried: its entry in the call's ``attempts``, and how it ended."""

    prepared: Prepared
    llm: RoutableLLM
    entry: dict
    started: float
    out_of_time: bool = False  # it ended at the call's deadline: no other candidate is tried

    @classmethod
    def begin(cls, prepared: Prepared, llm: RoutableLLM) -> Attempt:
        started = time.perf_counter()
        entry = {"llm": llm.name}
        prepared.attempts.append(entry)
        return cls(prepared=prepared, llm=llm, entry=entry, started=started)

    def ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1e3, 3)

    def failed(
        self, outcome: str, error: str, status: int | None = None, *, detail: str | None = None, billing=Billing.NONE
    ) -> None:
        """Record why the attempt failed: ``error`` for everyone who may read the decision (no
        address, variable name or upstream body), ``detail`` for staff (the key removed)."""
        self.entry.update(outcome=outcome, status=status, error=error, latency_ms=self.ms())
        if detail:
            self.entry["detail"] = detail
        _charge(self.prepared, self.llm, self.entry, billing)

    def past_deadline(self, status: int | None = None, *, billing: str) -> None:
        """The call's deadline passed while this attempt waited: it fails, and no other is started."""
        self.failed("timeout", _deadline_passed(), status, billing=billing)
        self.out_of_time = True


async def respond(prepared: Prepared):
    """Try the candidates in order; the client's response (JSON, a stream, or an OpenAI-shaped error)."""
    return await Responder(prepared).respond()


class Responder:
    """One gateway call's candidates tried in order, and the client's response: one method per way
    the call can end — an upstream's answer as JSON (:meth:`answered`) or as a stream
    (:meth:`streamed`), the request refused by an upstream (:meth:`refused`), no upstream answering
    (:meth:`unanswered`), the client leaving (:meth:`cancelled`).

    Everything after the request's arrival happens before ``ROUTERHUB_UPSTREAM_DEADLINE_SECONDS``
    (``prepared.deadline``): an attempt still waiting then is cut off and no other is started."""

    def __init__(self, prepared: Prepared):
        self.prepared = prepared
        self.client = async_client()
        self.read_timeout = settings.ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS
        self.timeouts = Timeouts.from_settings().httpx()
        self.in_flight = False  # an upstream is working on the current attempt's request

    async def respond(self):
        prepared = self.prepared
        loop = asyncio.get_running_loop()
        prepared.deadline = loop.time() + settings.ROUTERHUB_UPSTREAM_DEADLINE_SECONDS - prepared.ms() / 1e3
        try:
            for index, upstream in enumerate(prepared.upstreams):
                if loop.time() >= prepared.deadline:
                    break
                attempt = Attempt.begin(prepared, upstream.candidate.llm)
                response = await self._try(index, upstream, attempt)
                if response is not None:
                    return response
                if attempt.out_of_time:
                    break
        except asyncio.CancelledError:
            self.cancelled()
            raise
        return await self.unanswered()

    async def _try(self, index: int, upstream: Upstream, attempt: Attempt):
        """One candidate: the client's response when this attempt ends the call, None to go on."""
        prepared = self.prepared
        if index > 0 and not await _written(prepared):
            attempt.failed("skipped", "its decision could not be written")
            return None
        if index > 0 and not await in_thread(
            gateway_fall_back,
            decision_id=prepared.plan.decision_id,
            candidate=_with_charges(upstream.candidate, prepared.charges),
        ):
            attempt.failed("skipped", "its estimated cost no longer fits in the budget")
            return None
        if upstream.problem:
            attempt.failed("credentials", "its API key is not configured", detail=upstream.problem)
            return None
        response = await self._send(upstream, attempt)
        if response is None:
            return None
        status = response.status_code
        if not 200 <= status < 300:
            return await self._not_ok(upstream, attempt, response)
        if prepared.chat.stream:
            opened = await _first_chunk(prepared, response, attempt)
            self.in_flight = False
            if opened is None:
                return None
            attempt.entry.update(outcome="ok", status=status)
            return self.streamed(upstream, response, *opened)
        return await self._read(attempt, response)

    async def _send(self, upstream: Upstream, attempt: Attempt) -> httpx.Response | None:
        """The upstream's response, its body not read yet; None after recording why there is none."""
        prepared = self.prepared
        prepared.secret = upstream.api_key
        prepared.llm = attempt.llm
        prepared.sent = False
        body = {**prepared.chat.upstream_body, "model": attempt.llm.api_model or attempt.llm.name}
        request = self.client.build_request(
            "POST",
            upstream.url,
            json=body,
            headers={**auth_headers(upstream.api_key), **request_log.upstream_headers()},
            timeout=self.timeouts,
            extensions={"trace": prepared.trace},
        )
        self.in_flight = True
        try:
            async with asyncio.timeout_at(prepared.deadline):
                return await self.client.send(request, stream=True)
        except UpstreamRefused as exc:
            self.in_flight = False
            attempt.failed("refused", "its endpoint's address may not be called", detail=str(exc))
        except TimeoutError:
            self.in_flight = False
            attempt.past_deadline(billing=Billing.UNSEEN if prepared.sent else Billing.NONE)
        except httpx.TimeoutException:
            self.in_flight = False
            attempt.failed(
                "timeout",
                f"no answer within {self.read_timeout:g} s (timeout)",
                billing=Billing.UNSEEN if prepared.sent else Billing.NONE,
            )
        except (httpx.TransportError, ConnectionError) as exc:
            self.in_flight = False
            attempt.failed(
                "connection_error",
                "the connection failed",
                detail=redact(f"{type(exc).__name__}: {exc}", upstream.api_key),
            )
        return None

    async def _not_ok(self, upstream: Upstream, attempt: Attempt, response: httpx.Response):
        """An answer other than 2xx: the next candidate's turn (None), or the request refused."""
        status = response.status_code
        raw = await _read_error_body(response, self.prepared.deadline)
        self.in_flight = False
        detail = redact(raw.decode("utf-8", "replace"), upstream.api_key)
        if fallback_worthy(status) or 300 <= status < 400:
            what = f"HTTP {status} (a redirect, never followed)" if status < 400 else f"HTTP {status}"
            # A proxy's gateway timeout: the LLM behind it may have worked on the request.
            billing = Billing.UNSEEN if status in GATEWAY_TIMEOUT_STATUSES else Billing.NONE
            attempt.failed(f"http_{status}", what, status, detail=detail, billing=billing)
            return None
        attempt.failed("client_error", f"HTTP {status}: the LLM refused the request", status, detail=detail)
        return await self.refused(upstream, status, raw)

    async def _read(self, attempt: Attempt, response: httpx.Response):
        """A JSON answer read whole: the client's response, or None after recording why it could not be."""
        status = response.status_code
        answered_at = time.perf_counter()  # the LLM's answer began: status line and headers
        try:
            async with asyncio.timeout_at(self.prepared.deadline):
                raw = await aread_bounded(response, MAX_ANSWER_BYTES)
        except TimeoutError:
            self.in_flight = False
            attempt.past_deadline(status, billing=Billing.UNSEEN)
            return None
        except httpx.TimeoutException:
            self.in_flight = False
            attempt.failed(
                "timeout", f"its answer stalled for {self.read_timeout:g} s (timeout)", status, billing=Billing.UNSEEN
            )
            return None
        except BadAnswer as exc:
            self.in_flight = False
            attempt.failed(exc.outcome, f"its answer was cut off: {exc}", status, billing=Billing.UNSEEN)
            return None
        except httpx.TransportError as exc:
            self.in_flight = False
            attempt.failed(
                "connection_error",
                "the connection broke while its answer was read",
                status,
                detail=type(exc).__name__,
                billing=Billing.UNSEEN,
            )
            return None
        finally:
            await response.aclose()
        self.in_flight = False
        attempt.entry.update(outcome="ok", status=status, latency_ms=attempt.ms())
        return await self.answered(attempt.llm.name, raw, answered_at)

    # --- how the call ends ------------------------------------------------------------------------

    async def answered(self, name: str, raw: bytes, answered_at: float) -> HttpResponse:
        return await _json_response(self.prepared, name, raw, answered_at)

    def streamed(self, upstream: Upstream, response: httpx.Response, first: bytes, rest) -> StreamingHttpResponse:
        return _streaming_response(self.prepared, upstream, response, first, rest)

    async def refused(self, upstream: Upstream, status: int, raw: bytes) -> HttpResponse:
        await _finish(self.prepared, _record(self.prepared, status=Status.CLIENT_ERROR))
        return _refused(self.prepared, upstream, status, raw)

    def cancelled(self) -> None:
        """The client left while an upstream was working on it: once the request was sent it is paid
        for — a JSON answer in full (the provider finishes it), a stream as far as it went (nothing:
        closing the connection stops the provider)."""
        prepared = self.prepared
        billing = Billing.NONE
        if self.in_flight and prepared.sent:
            billing = Billing.SEEN if prepared.chat.stream else Billing.UNSEEN
        if self.in_flight and prepared.attempts:
            prepared.attempts[-1].setdefault("outcome", Status.CANCELLED)
        _finish_in_background(prepared, _record(prepared, status=Status.CANCELLED, billing=billing))

    async def unanswered(self) -> HttpResponse:
        prepared = self.prepared
        await _finish(prepared, _record(prepared, status=Status.FAILED))
        tried = [a for a in prepared.attempts if a.get("outcome") != "skipped"]
        timed_out = bool(tried) and all(a.get("outcome") == "timeout" for a in tried)
        summary = "; ".join(f"{a['llm']}: {a.get('error') or a.get('outcome')}" for a in prepared.attempts)
        return GatewayError(
            504 if timed_out else 502,
            f"No LLM answered ({len(prepared.attempts)} attempt(s): {summary}).",
            type="upstream_error",
            code="upstream_timeout" if timed_out else "upstream_failed",
        ).response(**{"X-Routerhub-Decision-Id": str(prepared.plan.decision_id)})


async def _written(prepared: Prepared) -> bool:
    """Wait until the call's decision is written (admitted against a lease: it is written while the
    LLM works, so this rarely waits); False if writing it failed (logged by the settlement)."""
    if prepared.written is None:
        return True
    try:
        await asyncio.shield(asyncio.wrap_future(prepared.written))
    except asyncio.CancelledError:
        raise
    except Exception:
        return False
    return True


async def _read_error_body(response: httpx.Response, deadline: float) -> bytes:
    """At most ``MAX_ERROR_BYTES`` of an error answer, read before ``deadline`` (an upstream cannot make
    the gateway hold a huge body, or wait for one)."""
    chunks, size = [], 0
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_ERROR_BYTES:
                    break
    except (httpx.HTTPError, TimeoutError):
        pass
    finally:
        await response.aclose()
    return b"".join(chunks)[:MAX_ERROR_BYTES]


def _refused(prepared: Prepared, upstream: Upstream, status: int, raw: bytes) -> HttpResponse:
    """A 4xx of the upstream as the client gets it: the same status, in OpenAI's shape, naming the LLM,
    with the upstream's message (what the client may need to fix its request) stripped of secrets and
    addresses — never the upstream's body as it came."""
    name = upstream.candidate.llm.name
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        error = None
    error = error if isinstance(error, dict) else {}

    def said(key: str, limit: int = 300) -> str | None:
        value = error.get(key)
        if not isinstance(value, str) or not value.strip():
            return None
        return public_text(value, upstream.api_key, hosts=_hosts(upstream), limit=limit)

    message = said("message")
    body = {
        "error": {
            "message": f"The LLM {name} refused the request (HTTP {status})" + (f": {message}" if message else "."),
            "type": said("type", 60) or "invalid_request_error",
            "param": said("param", 60),
            "code": said("code", 60),
        }
    }
    response = HttpResponse(
        json.dumps(body, ensure_ascii=False).encode(), status=status, content_type="application/json"
    )
    for header, value in prepared.headers(name).items():
        response[header] = value
    return response


def _hosts(upstream: Upstream) -> tuple[str, ...]:
    """The upstream's host name: never shown to tenants (its endpoint is staff's business)."""
    return (httpx.URL(upstream.url).host,)


async def _first_chunk(prepared: Prepared, response: httpx.Response, attempt: Attempt):
    """(first bytes, the rest of the stream), or None after recording why the stream never started."""
    status = response.status_code
    read_timeout = settings.ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS
    if not plain(response):
        await response.aclose()
        attempt.failed(
            "bad_answer", "its stream was compressed, which was not asked for", status, billing=Billing.UNSEEN
        )
        return None
    iterator = response.aiter_raw()
    try:
        async with asyncio.timeout_at(prepared.deadline):
            first = await anext(iterator)
    except StopAsyncIteration:
        await response.aclose()
        attempt.failed("empty_stream", "its stream ended before its first byte", status)
        return None
    except TimeoutError:
        await response.aclose()
        attempt.failed("timeout", _deadline_passed(), status, billing=Billing.UNSEEN)
        return None
    except httpx.TimeoutException:
        await response.aclose()
        attempt.failed(
            "timeout", f"no streamed byte within {read_timeout:g} s (timeout)", status, billing=Billing.UNSEEN
        )
        return None
    except httpx.TransportError as exc:
        await response.aclose()
        attempt.failed("connection_error", "its stream broke before its first byte", status, detail=type(exc).__name__)
        return None
    return first, iterator


async def _json_response(prepared: Prepared, name: str, raw: bytes, answered_at: float) -> HttpResponse:
    ttft = (answered_at - prepared.started) * 1e3
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        payload = None
    if isinstance(payload, dict):
        payload = scrub_json(payload, prepared.secret)
        payload["model"] = name
        choices = payload.get("choices")
        text = "".join(
            answer_text(c.get("message") or {})
            for c in (choices if isinstance(choices, list) else [])
            if isinstance(c, dict)
        )
        usage = payload.get("usage")
        raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    else:  # not the JSON an OpenAI-compatible API sends: passed on as it is, its text counted
        raw = prepared.scrub(raw)
        text, usage = raw.decode("utf-8", "replace"), None
    record = _record(prepared, status=Status.OK, billing=Billing.SEEN, usage=usage, answer_text=text, ttft_ms=ttft)
    meter = partial(metered_cost, record=record, llm=prepared.llm, prompt=prepared.chat.prompt)
    # Counting a long answer's tokens would hold up every call of the event loop: a thread does it.
    metered = await in_thread(meter) if len(text) > COUNT_ON_THE_LOOP_CHARS else meter()
    _finish_in_background(prepared, record, metered)  # written while the answer goes out
    await _written(prepared)  # the decision the answer names can be read once the client has it
    prepared.timings["upstream"] = prepared.ms() - prepared.timings.get("prepare", 0.0)
    response = HttpResponse(raw, content_type="application/json")
    for header, value in prepared.headers(name).items():
        response[header] = value
    response["X-Routerhub-Cost-Usd"] = format(metered.cost_usd.normalize(), "f")
    return response


def _streaming_response(prepared: Prepared, upstream: Upstream, response: httpx.Response, first: bytes, rest):
    name = upstream.candidate.llm.name
    relay = EventRelay(
        model=name, client_wants_usage=prepared.chat.client_wants_usage, secret=upstream.api_key, hosts=_hosts(upstream)
    )
    streamed = StreamingHttpResponse(
        _relay(prepared, relay, response, first, rest), content_type="text/event-stream; charset=utf-8"
    )
    streamed["Cache-Control"] = "no-cache"
    streamed["X-Accel-Buffering"] = "no"  # a proxy in front must not buffer the stream either
    for header, value in prepared.headers(name).items():
        streamed[header] = value
    return streamed


async def _relay(prepared: Prepared, relay: EventRelay, upstream: httpx.Response, first: bytes, rest):
    """The client's stream: each upstream event as it arrives, rewritten; [DONE] once the call is metered.

    A stream cut by its upstream (closed, an error event) is charged what was streamed; one cut by
    routerhub — a stall past the read timeout, the call's deadline, an event or a stream over its
    size cap — at least what the call reserved, since the provider may have gone on producing it."""
    name = relay.model
    attempt = prepared.attempts[-1]
    read_timeout = settings.ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS
    ttft = None
    ending = b""
    status = Status.OK
    billing = Billing.SEEN
    problem = None
    finished = False
    try:
        out = relay.feed(first)
        ttft = prepared.ms()
        while True:
            out = out.removesuffix(DONE)  # held back: sent once the call is metered
            if out:
                yield out
            if relay.done:
                await _drain(rest)
                break
            try:
                async with asyncio.timeout_at(prepared.deadline):
                    data = await anext(rest)
            except StopAsyncIteration:
                break
            out = relay.feed(data)
        tail = relay.flush().removesuffix(DONE)
        if tail:
            yield tail
        if relay.upstream_error is not None:
            status, problem = Status.INTERRUPTED, "it reported an error mid-stream"
            ending = DONE
        elif not relay.done:
            status, problem = Status.INTERRUPTED, "its stream ended before it was complete"
        else:
            ending = DONE
    except TimeoutError:
        status, billing, problem = Status.INTERRUPTED, Billing.UNSEEN, _deadline_passed()
    except httpx.TimeoutException:
        status, billing, problem = (
            Status.INTERRUPTED,
            Billing.UNSEEN,
            f"it sent nothing for {read_timeout:g} s (timeout)",
        )
    except AnswerTooLarge as exc:
        status, billing, problem = Status.INTERRUPTED, Billing.UNSEEN, f"its answer was cut off: {exc}"
    except httpx.TransportError as exc:
        status, problem = Status.INTERRUPTED, f"its stream broke ({type(exc).__name__})"
    except (asyncio.CancelledError, GeneratorExit):
        status = Status.CANCELLED
        attempt.update(outcome="cancelled")
        await upstream.aclose()  # cancels the upstream call: the provider stops generating
        _finish_in_background(prepared, _stream_record(prepared, relay, status, ttft, billing))
        finished = True
        raise
    finally:
        if not finished:
            await upstream.aclose()
    if status != Status.OK:
        attempt.update(outcome=status, error=problem)
        if not ending:
            ending = sse_event(_stream_error(f"The LLM {name} did not complete its answer: {problem}.")) + DONE
    await _finish(prepared, _stream_record(prepared, relay, status, ttft, billing))
    yield ending


async def _drain(rest) -> None:
    """Read what follows an upstream's [DONE] (normally just the end of the body, already received, so
    the connection can be reused) — for a moment at most: an upstream that goes on is cut off."""
    try:
        async with asyncio.timeout(AFTER_DONE_SECONDS):
            async for _ in rest:
                pass
    except (TimeoutError, httpx.HTTPError):
        pass


def _stream_record(prepared: Prepared, relay: EventRelay, status: str, ttft: float | None, billing: str) -> CallRecord:
    return _record(prepared, status=status, billing=billing, usage=relay.usage, answer_text=relay.text, ttft_ms=ttft)


def _stream_error(message: str) -> dict:
    return {"error": {"message": message, "type": "upstream_error", "param": None, "code": "upstream_interrupted"}}
