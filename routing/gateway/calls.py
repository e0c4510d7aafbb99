"""One gateway call, from the parsed body to the last byte.

1. :func:`prepare` (a pool thread): authenticate the key, validate the body, route or resolve the
   named LLM, reserve the estimate, and read each candidate's key — one trip off the event loop.
2. :func:`respond` (the event loop): try the candidates in order. A connection error, a timeout
   before the first byte, 408, 429 or 5xx (or a redirect, never followed) moves the decision and its
   reservation to the next candidate that still fits the budget; any other 4xx is the request's fault
   and goes back to the client as the upstream sent it. Every attempt is recorded.
3. The answer: a JSON body with ``model`` set to the LLM's name, or a stream relayed event by event
   (``routing/upstream/streams.py``). After the first streamed byte there is no fallback: a failure
   becomes an error event in OpenAI's shape.
4. :func:`~routing.services.gateway.gateway_finish` (a pool thread) replaces the reservation by the
   measured cost. A JSON answer does not wait for it: its cost (usage × the answering LLM's prices,
   ``X-Routerhub-Cost-Usd``) is computed here and the record is written while the answer is sent —
   until then the decision keeps its reservation, so the budget is never under-counted. A stream's
   record is written before its ``[DONE]``. A client that disconnects cancels the upstream call; what
   it used is metered in the background, since the cancelled request can no longer wait for anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import httpx
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse

from routing.apis.throttling import FixedWindow, failed_authentication_window
from routing.gateway import settlement
from routing.gateway.errors import GatewayError, from_domain
from routing.gateway.requests import ChatRequest, chat_request
from routing.gateway.threads import in_background, in_thread
from routing.models import Decision
from routing.selectors.gateway import model_target
from routing.selectors.routers import RoutableLLM
from routing.selectors.tenancy import api_key_authenticate_cached
from routing.services.decisions import Candidate
from routing.services.gateway import (
    CallRecord,
    GatewayPlan,
    MeteredCall,
    gateway_fall_back,
    gateway_plan,
    metered_cost,
)
from routing.upstream.addresses import UpstreamRefused
from routing.upstream.credentials import CredentialError, upstream_api_key
from routing.upstream.http import (
    REDACTED,
    Timeouts,
    async_client,
    auth_headers,
    chat_completions_url,
    fallback_worthy,
    redact,
)
from routing.upstream.streams import DONE, EventRelay, answer_text, sse_event

Status = Decision.CallStatus
logger = logging.getLogger(__name__)
# Server-Timing's words for where a routed prompt's embedding came from (as /api/v1/route says them).
_EMBED_SOURCES = {"memory": "cached", "shared": "shared-cache"}


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

    The rate limits are /api/'s (``routing/apis/throttling.py``): per API key, and failed
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
    settlement.give_back(plan.leases_to_return)
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
    _finish_in_background(
        prepared, CallRecord(status=Status.CANCELLED, attempts=[], latency_ms=prepared.ms(), billed=False)
    )


def _submit_finish(prepared: Prepared, record: CallRecord, metered: MeteredCall | None = None):
    """Hand the call's finish to the pool, once: the first record of a call is the one kept."""
    if prepared.finishing:
        return None
    prepared.finishing = True
    future = in_background(
        _meter_and_finish,
        decision_id=prepared.plan.decision_id,
        record=record,
        llm=prepared.llm,
        input_tokens=prepared.plan.input_tokens,
        metered=metered,
        log_text=prepared.plan.log_text,
    )
    future.add_done_callback(_log_failure)
    return future


def _meter_and_finish(*, decision_id, record: CallRecord, llm, input_tokens: int, metered, log_text: bool):
    if metered is None:  # counting an answer's tokens is CPU work: here, off the event loop
        metered = metered_cost(record=record, llm=llm, input_tokens=input_tokens)
    return settlement.finish(decision_id=decision_id, record=record, metered=metered, log_text=log_text)


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        # The decision keeps its reservation (the estimate) as what it counts.
        logger.error("metering a gateway call failed", exc_info=future.exception())


def _finish_in_background(prepared: Prepared, record: CallRecord, metered: MeteredCall | None = None) -> None:
    _submit_finish(prepared, record, metered)


async def _finish(prepared: Prepared, record: CallRecord):
    """The finish, awaited — shielded, so a client leaving meanwhile cannot stop it half-way."""
    future = _submit_finish(prepared, record)
    return await asyncio.shield(asyncio.wrap_future(future))


def _record(prepared: Prepared, **fields) -> CallRecord:
    return CallRecord(
        secrets=(prepared.secret,) if prepared.secret else (),
        attempts=prepared.attempts,
        latency_ms=prepared.ms(),
        request_body=prepared.chat.upstream_body if prepared.plan.log_text else None,
        **fields,
    )


async def respond(prepared: Prepared):
    """Try the candidates in order; the client's response (JSON, a stream, or an OpenAI-shaped error)."""
    client = async_client()
    timeouts = Timeouts.from_settings().httpx()
    in_flight = False
    try:
        for index, upstream in enumerate(prepared.upstreams):
            llm = upstream.candidate.llm
            attempt_started = time.perf_counter()
            attempt = {"llm": llm.name}
            prepared.attempts.append(attempt)

            def failed(outcome: str, error: str, status: int | None = None, _a=attempt, _s=attempt_started) -> None:
                _a.update(
                    outcome=outcome, status=status, error=error, latency_ms=round((time.perf_counter() - _s) * 1e3, 3)
                )

            if index > 0 and not await _written(prepared):
                failed("skipped", "its decision could not be written")
                continue
            if index > 0 and not await in_thread(
                gateway_fall_back, decision_id=prepared.plan.decision_id, candidate=upstream.candidate
            ):
                failed("skipped", "its estimated cost no longer fits in the budget")
                continue
            if upstream.problem:
                failed("credentials", upstream.problem)
                continue
            prepared.secret = upstream.api_key
            prepared.llm = llm
            body = {**prepared.chat.upstream_body, "model": llm.api_model or llm.name}
            request = client.build_request(
                "POST", upstream.url, json=body, headers=auth_headers(upstream.api_key), timeout=timeouts
            )
            in_flight = True
            try:
                response = await client.send(request, stream=True)
            except UpstreamRefused as exc:
                in_flight = False
                failed("refused", str(exc))
                continue
            except httpx.TimeoutException:
                in_flight = False
                failed("timeout", "no answer before the timeout")
                continue
            except (httpx.TransportError, ConnectionError) as exc:
                in_flight = False
                failed("connection_error", redact(f"{type(exc).__name__}: {exc}", upstream.api_key))
                continue
            status = response.status_code
            if not 200 <= status < 300:
                raw = await _read_error_body(response)
                in_flight = False
                if fallback_worthy(status) or 300 <= status < 400:
                    what = "redirect (never followed)" if status < 400 else f"HTTP {status}"
                    failed(
                        f"http_{status}", f"{what}: {redact(raw.decode('utf-8', 'replace'), upstream.api_key)}", status
                    )
                    continue
                failed("client_error", redact(raw.decode("utf-8", "replace"), upstream.api_key), status)
                await _finish(prepared, _record(prepared, status=Status.CLIENT_ERROR, billed=False))
                return _passed_through(response, prepared.scrub(raw), prepared.headers(llm.name))
            if prepared.chat.stream:
                opened = await _first_chunk(response, failed)
                if opened is None:
                    in_flight = False
                    continue
                attempt.update(outcome="ok", status=status)
                in_flight = False  # the relay meters from here on
                return _streaming_response(prepared, llm.name, response, *opened)
            answered_at = time.perf_counter()  # the LLM's answer began: status line and headers
            try:
                raw = await response.aread()
            except httpx.TimeoutException:
                in_flight = False
                failed("timeout", "the answer did not arrive before the timeout")
                continue
            except httpx.TransportError as exc:
                in_flight = False
                failed("connection_error", f"{type(exc).__name__} while reading the answer")
                continue
            finally:
                await response.aclose()
            in_flight = False
            attempt.update(
                outcome="ok", status=status, latency_ms=round((time.perf_counter() - attempt_started) * 1e3, 3)
            )
            return await _json_response(prepared, llm.name, raw, answered_at)
    except asyncio.CancelledError:
        # The client left while an upstream was working on it: the prompt was sent, so it is paid for.
        _finish_in_background(prepared, _record(prepared, status=Status.CANCELLED, billed=in_flight))
        raise
    await _finish(prepared, _record(prepared, status=Status.FAILED, billed=False))
    timed_out = all(a.get("outcome") == "timeout" for a in prepared.attempts if a.get("outcome") != "skipped")
    summary = "; ".join(f"{a['llm']}: {a.get('outcome')}" for a in prepared.attempts)
    return GatewayError(
        504 if timed_out and prepared.attempts else 502,
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


async def _read_error_body(response: httpx.Response, limit: int = 65536) -> bytes:
    """At most ``limit`` bytes of an error answer (an upstream cannot make the gateway hold a huge body)."""
    chunks, size = [], 0
    try:
        async for chunk in response.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    except httpx.HTTPError:
        pass
    finally:
        await response.aclose()
    return b"".join(chunks)[:limit]


def _passed_through(response: httpx.Response, raw: bytes, headers: dict) -> HttpResponse:
    passed = HttpResponse(
        raw, status=response.status_code, content_type=response.headers.get("content-type", "application/json")
    )
    for name, value in headers.items():
        passed[name] = value
    return passed


async def _first_chunk(response: httpx.Response, failed):
    """(first bytes, the rest of the stream), or None after recording why the stream never started."""
    iterator = response.aiter_bytes()
    try:
        first = await anext(iterator)
    except StopAsyncIteration:
        await response.aclose()
        failed("empty_stream", "the stream ended before its first byte", response.status_code)
        return None
    except httpx.TimeoutException:
        await response.aclose()
        failed("timeout", "no streamed byte before the timeout", response.status_code)
        return None
    except httpx.TransportError as exc:
        await response.aclose()
        failed("connection_error", f"{type(exc).__name__} before the first streamed byte", response.status_code)
        return None
    return first, iterator


async def _json_response(prepared: Prepared, name: str, raw: bytes, answered_at: float) -> HttpResponse:
    ttft = (answered_at - prepared.started) * 1e3
    raw = prepared.scrub(raw)
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        payload["model"] = name
        text = "".join(answer_text(c.get("message") or {}) for c in payload.get("choices") or [] if isinstance(c, dict))
        usage = payload.get("usage")
        raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    else:  # not the JSON an OpenAI-compatible API sends: passed on as it is, its text counted
        text, usage = raw.decode("utf-8", "replace"), None
    record = _record(prepared, status=Status.OK, billed=True, usage=usage, answer_text=text, ttft_ms=ttft)
    metered = metered_cost(record=record, llm=prepared.llm, input_tokens=prepared.plan.input_tokens)
    _finish_in_background(prepared, record, metered)  # written while the answer goes out
    await _written(prepared)  # the decision the answer names can be read once the client has it
    prepared.timings["upstream"] = prepared.ms() - prepared.timings.get("prepare", 0.0)
    response = HttpResponse(raw, content_type="application/json")
    for header, value in prepared.headers(name).items():
        response[header] = value
    response["X-Routerhub-Cost-Usd"] = format(metered.cost_usd.normalize(), "f")
    return response


def _streaming_response(prepared: Prepared, name: str, upstream: httpx.Response, first: bytes, rest):
    response = StreamingHttpResponse(
        _relay(prepared, name, upstream, first, rest), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy in front must not buffer the stream either
    for header, value in prepared.headers(name).items():
        response[header] = value
    return response


async def _relay(prepared: Prepared, name: str, upstream: httpx.Response, first: bytes, rest):
    """The client's stream: each upstream event as it arrives, rewritten; [DONE] once the call is metered."""
    relay = EventRelay(model=name, client_wants_usage=prepared.chat.client_wants_usage)
    attempt = prepared.attempts[-1]
    ttft = None
    ending = b""
    status = Status.OK
    finished = False
    try:
        out = relay.feed(first)
        ttft = prepared.ms()
        async for data in _chain(out, rest, relay):
            yield prepared.scrub(data)
        tail = relay.flush()
        if tail and tail != DONE:
            yield prepared.scrub(tail)
        if relay.upstream_error is not None:
            status = Status.INTERRUPTED
            ending = DONE
        elif not relay.done:
            status = Status.INTERRUPTED
            ending = sse_event(_stream_error("The LLM's stream ended before it was complete.")) + DONE
        else:
            ending = DONE
    except httpx.TimeoutException:
        status = Status.INTERRUPTED
        ending = sse_event(_stream_error("The LLM stopped sending before the answer was complete (timeout).")) + DONE
    except httpx.TransportError as exc:
        status = Status.INTERRUPTED
        ending = sse_event(_stream_error(f"The LLM's stream broke ({type(exc).__name__}).")) + DONE
    except (asyncio.CancelledError, GeneratorExit):
        status = Status.CANCELLED
        attempt.update(outcome="cancelled")
        await upstream.aclose()  # cancels the upstream call: the provider stops generating
        _finish_in_background(prepared, _stream_record(prepared, relay, status, ttft))
        finished = True
        raise
    finally:
        if not finished:
            await upstream.aclose()
    if status != Status.OK:
        attempt.update(outcome=status)
    await _finish(prepared, _stream_record(prepared, relay, status, ttft))
    yield ending


async def _chain(first_out: bytes, rest, relay: EventRelay):
    """Rewritten events of the first chunk and of every later one; [DONE] is held back by the caller."""
    if first_out:
        yield first_out.removesuffix(DONE)
    async for data in rest:
        out = relay.feed(data)
        if out:
            out = out.removesuffix(DONE)
            if out:
                yield out


def _stream_record(prepared: Prepared, relay: EventRelay, status: str, ttft: float | None) -> CallRecord:
    return _record(prepared, status=status, billed=True, usage=relay.usage, answer_text=relay.text, ttft_ms=ttft)


def _stream_error(message: str) -> dict:
    return {"error": {"message": message, "type": "upstream_error", "param": None, "code": "upstream_interrupted"}}
