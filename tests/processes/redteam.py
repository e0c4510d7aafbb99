"""The budget red team's clients and its audit (``test_budget_redteam.py``).

- :func:`burst` sends every tenant's calls at once to the web processes in turn, a few at a time per
  tenant, as raw HTTP (so that a body can carry NUL or a lone surrogate, a client can leave half-way
  and a 50 MB answer is counted, not kept), and can SIGKILL one web process part-way.
- :func:`audit` compares what the clients saw, what routerhub recorded (decisions, budget periods,
  leases) and what the hostile upstream billed (its own ledger), and returns every broken promise.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

import httpx

from tests.fakes.ledger_upstream import AUDIO_OUTPUT_MULTIPLIER, TAG
from tests.processes.workers import stop_process

# What the budget bound (docs/gateway-and-budgets.md) allows past the limit per call that reached the
# LLM for the prompt's framing as the provider counts it beyond routerhub's own count: none (both count OpenAI's 3 per
# message and 3 for the reply).
FRAMING_TOKENS = 0
QUANTUM = Decimal("1e-10")  # the budget's precision; routerhub rounds each call's cost up to it
EVENT_PARSE_LIMIT = 1 << 20  # the client reads larger events' sizes only


def usd(value) -> Decimal:
    return Decimal(str(value)).quantize(QUANTUM, rounding=ROUND_CEILING)


# --- the clients ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    status: tuple[int, ...] = ()  # the statuses the client may get …
    param: str | None = None  # … and with a 400, an OpenAI error whose param starts with this
    max_bytes: int | None = None  # the client must never be sent more than this
    ended_by_gateway: bool = False  # a stream routerhub itself must end (error event, [DONE]) in time


@dataclass
class Call:
    tag: str
    tenant: str
    label: str  # what the call tries, for the report
    body: dict
    leave_after_events: int | None = None  # a stream's client leaves after this many events
    leave_after_seconds: float | None = None  # the client leaves after this long
    patience: float = 40.0  # the client gives up after this long
    expect: Expect = field(default_factory=Expect)
    server: int | None = None  # sent to this web process (else to the next live one)

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    def raw(self) -> bytes:
        # ensure_ascii: NUL and lone surrogates go as \u0000 and \ud800 escapes, as a JSON client sends them
        return json.dumps(self.body).encode()


@dataclass
class Result:
    call: Call
    server: int
    status: int | None = None
    decision_id: str | None = None
    error: dict | None = None  # the OpenAI error of a refused call
    received: int = 0  # body bytes
    events: int = 0  # stream events with data
    done: bool = False  # saw data: [DONE]
    error_event: bool = False  # saw an error event
    ended: str = ""  # complete, left (the client left as planned), gave_up, connection_error, broken
    started: float = 0.0  # time.monotonic()
    elapsed: float = 0.0

    @property
    def answered(self) -> bool:
        return self.status == 200


class WebServer:
    """One web process (scripts/web.sh, one uvicorn worker) on the test database."""

    def __init__(self, *, index: int, url: str, process: subprocess.Popen, log_path) -> None:
        self.index, self.url, self.process, self.log_path = index, url, process, log_path
        self.killed = False

    @property
    def alive(self) -> bool:
        return not self.killed and self.process.poll() is None

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.killed = True

    def stop(self) -> None:
        """SIGTERM: uvicorn's graceful shutdown, which writes queued decisions and returns leases."""
        if self.process.poll() is None:
            stop_process(self.process, timeout=40)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class UpstreamProcess:
    """The ledger upstream (``tests/fakes/ledger_upstream.py``) in its own process: the fixture
    ``ledger_upstream`` (``tests/processes/conftest.py``)."""

    def __init__(self, port: int, process: subprocess.Popen, log_path) -> None:
        self.port, self.process, self.log_path = port, process, log_path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def ledger(self) -> dict:
        return httpx.get(self.url + "/ledger", timeout=30).json()

    def settled_ledger(self, timeout: float = 30) -> list[dict]:
        """The ledger once no request is in progress (every caller has left or been answered)."""
        deadline = time.monotonic() + timeout
        while (ledger := self.ledger())["in_progress"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not ledger["in_progress"], f"{ledger['in_progress']} upstream request(s) still held"
        return ledger["calls"]


@dataclass(frozen=True)
class At:
    """Something done to the service part-way through a burst (in a thread): a kill, a held lock."""

    after_seconds: float
    action: Callable[[], None]


async def burst(
    calls: list[Call], servers: list[WebServer], keys: dict[str, str], *, per_tenant: int = 4, actions=()
) -> list[Result]:
    """Every tenant's calls at once, ``per_tenant`` at a time per tenant in their order; each call goes to
    the next live web process. ``actions`` (:class:`At`) run meanwhile."""
    queues: dict[str, asyncio.Queue] = defaultdict(asyncio.Queue)
    for call in calls:
        queues[call.tenant].put_nowait(call)
    results: list[Result] = []
    turn = iter(range(10**9))
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

        async def worker(queue: asyncio.Queue) -> None:
            while not queue.empty():
                call = queue.get_nowait()
                live = [s for s in servers if s.alive]
                server = servers[call.server] if call.server is not None else live[next(turn) % len(live)]
                results.append(await send(client, server, keys[call.tenant], call))

        async def act(at: At) -> None:
            await asyncio.sleep(at.after_seconds)
            await asyncio.to_thread(at.action)

        await asyncio.gather(*(worker(q) for q in queues.values() for _ in range(per_tenant)), *map(act, actions))
    return results


async def send(client: httpx.AsyncClient, server: WebServer, key: str, call: Call) -> Result:
    result = Result(call=call, server=server.index, started=time.monotonic())
    request = client.build_request(
        "POST",
        server.url + "/v1/chat/completions",
        content=call.raw(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=httpx.Timeout(call.patience + 10, connect=10),
    )
    planned = call.leave_after_seconds is not None
    try:
        async with asyncio.timeout(call.leave_after_seconds if planned else call.patience):
            response = await client.send(request, stream=True)
            try:
                result.status = response.status_code
                result.decision_id = response.headers.get("x-routerhub-decision-id")
                if call.stream and result.status == 200:
                    await _read_stream(response, result)
                else:
                    await _read_body(response, result)
            finally:
                await response.aclose()
    except TimeoutError:
        result.ended = "left" if planned else "gave_up"
    except httpx.TransportError as exc:
        result.ended = "connection_error" if result.status is None else f"broken ({type(exc).__name__})"
    result.elapsed = time.monotonic() - result.started
    return result


async def _read_body(response: httpx.Response, result: Result) -> None:
    head = bytearray()
    async for chunk in response.aiter_raw():
        result.received += len(chunk)
        if len(head) < 65536:
            head += chunk[: 65536 - len(head)]
    result.ended = "complete"
    if result.status != 200:
        try:
            payload = json.loads(bytes(head))
        except ValueError:
            payload = None
        result.error = payload.get("error") if isinstance(payload, dict) else {"message": bytes(head[:300])}


async def _read_stream(response: httpx.Response, result: Result) -> None:
    """Split events linearly (a 50 MB event is measured, not parsed); leave after the planned events."""
    pending = bytearray()
    searched = 0
    async for chunk in response.aiter_raw():
        result.received += len(chunk)
        pending += chunk
        while (end := pending.find(b"\n\n", searched)) >= 0:
            event = bytes(pending[:end])
            del pending[: end + 2]
            searched = 0
            _see_event(event, result)
            if result.call.leave_after_events is not None and result.events >= result.call.leave_after_events:
                result.ended = "left"
                return
        searched = max(0, len(pending) - 1)
    result.ended = "complete"


def _see_event(event: bytes, result: Result) -> None:
    if not event.startswith(b"data:"):
        return
    data = event[5:].strip()
    if data == b"[DONE]":
        result.done = True
        return
    result.events += 1
    if len(data) > EVENT_PARSE_LIMIT:
        return
    try:
        payload = json.loads(data)
    except ValueError:
        return
    if isinstance(payload, dict) and "error" in payload:
        result.error_event = True


# --- the audit ----------------------------------------------------------------------------------------


@dataclass
class Findings:
    """Broken promises, by the promise they break (a failure lists every one)."""

    broken: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)

    def add(self, promise: str, detail: str) -> None:
        self.broken[promise].append(detail)

    def report(self, examples: int = 6) -> str:
        lines = [*self.notes, ""]
        for promise, details in self.broken.items():
            lines.append(f"BROKEN ({len(details)}): {promise}")
            lines.extend(f"    {detail}" for detail in details[:examples])
            if len(details) > examples:
                lines.append(f"    … and {len(details) - examples} more")
        return "\n".join(lines)


@dataclass
class Billed:
    """One upstream request as the hostile upstream billed it, in USD at the LLM's registered prices."""

    entry: dict
    usd: Decimal
    framing_usd: Decimal  # the documented allowance for the provider's prompt framing
    tail_usd: Decimal  # output that may never have reached routerhub (sent just before it left)

    @property
    def clean(self) -> bool:
        """Billed in full and reported honestly: routerhub must charge exactly this."""
        return self.entry["status"] != 200 or (self.entry["ended"] == "complete" and self.entry["usage"] == "honest")


def bill(entry: dict, llm) -> Billed:
    if entry["status"] != 200 or llm is None:
        return Billed(entry, Decimal(0), Decimal(0), Decimal(0))
    tokens_in, tokens_out = entry["input_tokens"], entry["output_tokens"]
    if entry["audio_output"]:
        price = llm.expected_cost_usd(input_tokens=tokens_in, output_tokens=0)
        price += (llm.usd_per_mtok_out or 0.0) * tokens_out * AUDIO_OUTPUT_MULTIPLIER / 1e6
    else:  # exactly routerhub's arithmetic for usage × prices
        price = llm.expected_cost_usd(input_tokens=tokens_in, output_tokens=tokens_out)
    total = usd(price * entry["price_multiplier"] + entry["fee_usd"])
    framing = usd(llm.expected_cost_usd(input_tokens=FRAMING_TOKENS, output_tokens=0))
    tail = usd(llm.expected_cost_usd(input_tokens=0, output_tokens=entry["tail_tokens"]))
    return Billed(entry, total, framing, tail)


def tag_of(text: str) -> str | None:
    found = TAG.search(text or "")
    return found["tag"] if found else None


NEVER_SENT = {"skipped", "refused", "credentials"}  # attempt outcomes that never reached the LLM


def audit(
    *,
    results: list[Result],
    ledger: list[dict],
    killed: int | None = None,
    leased_at_stop: dict[str, str] | None = None,
) -> Findings:
    """Every promise a budget makes, checked against the upstream's ledger (module docstring)."""
    from registry.models import LLM
    from routing.models import BudgetLease, BudgetPeriod, Decision

    findings = Findings()
    llms = {llm.name: llm for llm in LLM.objects.all()}
    by_tag = {r.call.tag: r for r in results}
    billed: dict[str, list[Billed]] = defaultdict(list)
    for entry in ledger:
        billed[entry["tag"]].append(bill(entry, llms.get(entry["model"])))
    tenants = sorted({r.call.tenant for r in results})
    decisions = list(Decision.objects.filter(tenant__name__in=tenants).select_related("llm", "tenant"))
    decision_of = {}
    for decision in decisions:
        tag = tag_of(decision.routed_text)
        if tag is None or tag not in by_tag:
            findings.add("every decision is one of the calls sent", f"decision {decision.id} routed {tag!r}")
            continue
        decision_of[tag] = decision

    def on_killed(result: Result) -> bool:
        return killed is not None and result.server == killed

    # --- each call, as its client saw it -----------------------------------------------------------
    for result in results:
        call, tag = result.call, result.call.tag
        what = f"{tag} {call.label} → {call.body.get('model')}"
        decision = decision_of.get(tag)
        if result.status == 500:
            findings.add("no call is answered with a 500", f"{what}: {result.error}")
        expect = call.expect
        if expect.status and result.status not in expect.status:
            findings.add(
                "hostile requests are refused with the documented status",
                f"{what}: {result.status} (expected {' or '.join(map(str, expect.status))}) {str(result.error)[:160]}",
            )
        elif (
            result.status == 400
            and expect.param is not None
            and not str((result.error or {}).get("param") or "").startswith(expect.param)
        ):
            findings.add("a refusal names the offending field", f"{what}: param {(result.error or {}).get('param')!r}")
        if expect.max_bytes is not None and result.received > expect.max_bytes:
            findings.add(
                "an upstream's oversized answer never reaches the client",
                f"{what}: the client was sent {result.received:,} bytes",
            )
        if result.ended == "gave_up" and not expect.ended_by_gateway:
            findings.add(
                "every call ends before its client's patience runs out",
                f"{what}: gave up after {result.elapsed:.1f} s ({result.received:,} bytes received)",
            )
        if expect.ended_by_gateway and not (result.done and result.error_event):
            findings.add(
                "a stream routerhub must cut (it never ends, an event too large) ends with an error event and [DONE] in time",
                f"{what}: {result.ended} after {result.elapsed:.1f} s, [DONE] {result.done}",
            )
        if result.answered:
            if decision is None:
                # A stream's first bytes may leave before its decision is written: a process killed in
                # between loses the row (its spend must still count). A JSON answer waits for it.
                if not (on_killed(result) and call.stream):
                    findings.add("every answered call has its decision", f"{what}: answered, no decision")
                continue
            if result.decision_id != str(decision.id):
                findings.add("every answered call has its decision", f"{what}: header {result.decision_id}")
            if decision.call_status == Decision.CallStatus.PENDING and not on_killed(result):
                findings.add("every answered call is metered", f"{what}: decision still pending")
            if not any(b.entry["model"] == decision.llm.name for b in billed.get(tag, [])):
                findings.add(
                    "a decision's LLM is the one the upstream saw",
                    f"{what}: {decision.llm.name} never called",
                )
        elif result.status is not None and 400 <= result.status < 500:
            if billed.get(tag):
                findings.add(
                    "a refused call never reaches the LLM", f"{what}: {result.status}, upstream billed it anyway"
                )
            if decision is not None and not billed.get(tag):
                findings.add("a refused call leaves no decision", f"{what}: {result.status}, decision {decision.id}")

    # --- each upstream request against its decision --------------------------------------------------
    allowances: dict[str, Decimal] = {}  # per call: how much less than the bill routerhub may charge
    for tag, bills in billed.items():
        result = by_tag.get(tag)
        if result is None:
            findings.add("the upstream sees only calls the clients sent", f"tag {tag!r}")
            continue
        what = f"{tag} {result.call.label} → {', '.join(b.entry['model'] for b in bills)}"
        decision = decision_of.get(tag)
        total = sum((b.usd for b in bills), Decimal(0))
        metered = decision is not None and decision.call_status != Decision.CallStatus.PENDING
        # routerhub's own count of the prompt (no usage, or a cut call): the framing it does not count;
        # a stream it metered itself, cut while the upstream was sending: what was on its way.
        allowances[tag] = sum(
            (b.framing_usd + (b.tail_usd if metered else 0) for b in bills if b.usd and not b.clean), Decimal(0)
        )
        if decision is None:
            if not on_killed(result) and any(b.usd for b in bills):
                findings.add("every call the upstream billed has its decision", f"{what}: billed {total}, no decision")
            continue
        reached = [a for a in decision.attempts or [] if a.get("outcome") not in NEVER_SENT]
        if len(reached) != len(bills) and not on_killed(result):
            findings.add(
                "every attempt that reached the LLM is recorded",
                f"{what}: {len(reached)} attempt(s) recorded, the upstream saw {len(bills)}",
            )
        charged = decision.actual_cost_usd
        if charged is None:  # pending: it counts its reservation
            charged = decision.reserved_usd + decision.overage_usd
        rounding = QUANTUM * len(bills)
        if metered and all(b.clean for b in bills):
            if abs(charged - total) > rounding:
                findings.add(
                    "a call is charged what the upstream billed (usage × prices)",
                    f"{what}: charged {charged}, billed {total} ({_tokens(bills)})",
                )
        elif charged < total - allowances[tag] - rounding:
            findings.add(
                "a call the upstream billed is never charged less (timeouts, cut streams, usage lies)",
                f"{what}: charged {charged}, billed {total} ({_tokens(bills)}; ended {_endings(bills)})",
            )
        one_llm = all(b.entry["model"] == decision.llm.name for b in bills)
        framing = sum((b.framing_usd for b in bills), Decimal(0))
        if one_llm and total > decision.estimated_cost_usd + framing + rounding:
            findings.add(
                "the reservation is an upper bound on the bill",
                f"{what}: reserved {decision.estimated_cost_usd}, billed {total} ({_tokens(bills)}; "
                f"max_tokens sent {[b.entry['max_tokens_sent'] for b in bills]})",
            )
        if one_llm and not all(b.clean for b in bills) and charged > decision.estimated_cost_usd + framing + rounding:
            findings.add(
                "a call is never charged more than its reservation (an upstream's usage is not taken at its word)",
                f"{what}: reserved {decision.estimated_cost_usd}, charged {charged}, billed {total}",
            )

    # --- each tenant's budget ------------------------------------------------------------------------------
    for name in tenants:
        period = BudgetPeriod.objects.select_related("tenant").get(tenant__name=name)
        tenant = period.tenant
        tags = {r.call.tag for r in results if r.call.tenant == name}
        bills = [b for tag in tags for b in billed.get(tag, [])]
        mine = [d for d in decisions if d.tenant.name == name]
        allowed = list(tenant.allowed_llms.all()) or list(llms.values())
        cheapest = min(allowed, key=lambda llm: llm.expected_cost_usd(input_tokens=100, output_tokens=100) or 0)
        exhausted = [d for d in mine if d.lambda_reason == Decision.LambdaReason.BUDGET_EXHAUSTED]
        for decision in exhausted:
            if decision.llm_id != cheapest.id or tenant.when_budget_spent != tenant.WhenSpent.CHEAPEST:
                findings.add(
                    "after the budget is spent, only the cheapest allowed LLM is called (as overage), never a named one",
                    f"{name}: {tag_of(decision.routed_text)} → {decision.llm.name}, cost {decision.actual_cost_usd}",
                )
        exempt_tags = {tag_of(d.routed_text) for d in exhausted if d.llm_id == cheapest.id}
        exempt_recorded = sum((d.actual_cost_usd or d.overage_usd for d in exhausted if d.llm_id == cheapest.id), 0)
        exempt_billed = sum((b.usd for tag in exempt_tags for b in billed.get(tag, [])), Decimal(0))
        framing = sum((b.framing_usd for b in bills if b.usd), Decimal(0))
        tails = sum((b.tail_usd for b in bills if b.usd), Decimal(0))
        allowance = sum((allowances.get(tag, Decimal(0)) for tag in tags), Decimal(0))
        total_billed = sum((b.usd for b in bills), Decimal(0))
        recorded = period.spent_usd + period.overage_usd
        counted = sum((d.reserved_usd + d.overage_usd for d in mine), Decimal(0))
        rounding = QUANTUM * (len(bills) + len(mine))
        bound = period.limit_usd + framing + tails + rounding
        findings.notes.append(
            f"{name} ({tenant.when_budget_spent}): limit {period.limit_usd:.6f}, spent {period.spent_usd:.6f}, "
            f"overage {period.overage_usd:.6f}, leased {period.leased_usd:.6f}; the upstream billed "
            f"{total_billed:.6f} for {len(bills)} request(s) of {len(tags)} call(s); {len(mine)} decision(s), "
            f"{sum(1 for r in results if r.call.tenant == name and r.answered)} answered, "
            f"{sum(1 for r in results if r.call.tenant == name and r.status == 402)} refused with 402"
        )
        if period.spent_usd > period.limit_usd:
            findings.add("spent never exceeds the limit", f"{name}: spent {period.spent_usd} > {period.limit_usd}")
        if recorded - exempt_recorded > bound:
            findings.add(
                "recorded spend stays within the limit plus the documented bound",
                f"{name}: spent + overage {recorded:.8f} (of which cheapest-policy overage {exempt_recorded:.8f}) "
                f"> limit {period.limit_usd} + bound {framing + tails:.8f}",
            )
        if total_billed - exempt_billed > bound:
            findings.add(
                "the upstream's bill stays within the limit plus the documented bound",
                f"{name}: billed {total_billed:.8f} (cheapest-policy overage {exempt_billed:.8f}) "
                f"> limit {period.limit_usd} + bound {framing + tails:.8f}",
            )
        if recorded < total_billed - allowance - rounding:
            findings.add(
                "recorded spend is never less than what the upstream billed",
                f"{name}: spent + overage {recorded:.8f} < billed {total_billed:.8f}",
            )
        if killed is None and recorded != counted:
            findings.add(
                "the period counts exactly its decisions",
                f"{name}: spent + overage {recorded} ≠ Σ decisions {counted} ({len(mine)} decisions)",
            )
        if killed is not None and recorded < counted:
            findings.add(
                "the period counts at least its decisions",
                f"{name}: spent + overage {recorded} < Σ decisions {counted}",
            )
        if killed is None and period.requests != len(mine):
            findings.add(
                "the period counts every admitted call", f"{name}: requests {period.requests} ≠ {len(mine)} decisions"
            )
        if leased_at_stop and name in leased_at_stop:
            findings.add(
                "a web process that stops gives back every lease it took",
                f"{name}: {leased_at_stop[name]} USD still leased after both processes stopped",
            )
        leases = BudgetLease.objects.filter(period=period, amount_usd__gt=0).count()  # rows may stay, emptied
        if period.leased_usd != 0 or leases:
            findings.add(
                "no budget stays leased once the web processes stopped and the sweep ran",
                f"{name}: leased {period.leased_usd} in {leases} lease(s)",
            )
        pending = [d for d in mine if d.call_status == Decision.CallStatus.PENDING]
        pending = [
            d for d in pending if not (tag_of(d.routed_text) in by_tag and on_killed(by_tag[tag_of(d.routed_text)]))
        ]
        if pending:
            findings.add(
                "no call stays pending", f"{name}: {[tag_of(d.routed_text) for d in pending][:10]} still pending"
            )
    return findings


def _tokens(bills: list[Billed]) -> str:
    return "; ".join(
        f"{b.entry['model']}: {b.entry['input_tokens']} in, {b.entry['output_tokens']} out"
        + (f" ×{b.entry['price_multiplier']}" if b.entry["price_multiplier"] != 1 else "")
        + (" audio" if b.entry["audio_output"] else "")
        + (f" +{b.entry['fee_usd']} USD" if b.entry["fee_usd"] else "")
        + (f", usage {b.entry['usage']}" if b.entry["usage"] != "honest" else "")
        for b in bills
    )


def _endings(bills: list[Billed]) -> str:
    return ", ".join(f"{b.entry['act']}/{b.entry['ended']}" for b in bills)
