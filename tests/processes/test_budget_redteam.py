"""Budgets attacked as a tenant and an upstream would attack them: two real web processes on one
PostgreSQL database, a hostile upstream in its own process that keeps its own ledger of what it
billed, several tenants on small budgets sending at once, and the real lease sweep.

Each run sends every tenant's calls concurrently — normal calls among hostile ones — stops the web
processes as an operator would (SIGTERM: queued decisions written, leases returned; or SIGKILL and
the sweep), and then audits (``tests/processes/redteam.py``):

- every tenant: recorded spend (spent + overage) and the upstream's bill both stay within the limit
  plus the bound of docs/gateway-and-budgets.md (output that was on its way when a caller left); recorded spend is never
  less than the bill; the period counts exactly its decisions; nothing stays leased or pending;
- every call: answered ⇒ a decision, charged exactly usage × prices when the upstream billed in full
  and honestly, never less than the bill otherwise; the reservation bounds the bill; hostile input is
  a 400 naming its field before any upstream call or write; a 5xx bills nothing.

A failure lists every broken promise with examples, and the tenants' figures.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from registry.models import LLM
from tests.processes.conftest import web_pair
from tests.processes.redteam import At, Call, Expect, UpstreamProcess, WebServer, audit, burst

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FLASH = "gemini-1.5-flash-002"  # 0.075 / 0.30 USD per million tokens in and out
PRO = "gemini-1.5-pro-002"  # 1.25 / 5.00
PRICIEST = "jamba-1.5-large"  # 2.00 / 8.00: the slice's priciest LLM
BIG = 8 * 1024 * 1024  # far below the upstream's 50 MB, far above any real answer
# The web processes' settings here, over tests/fixtures/web.py's WEB_ENV.
REDTEAM_ENV = {
    "ROUTERHUB_DB_POOL_MAX_SIZE": "6",
    "ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS": "5",
    "ROUTERHUB_UPSTREAM_DEADLINE_SECONDS": "15",  # a stream that never ends is cut then
    "LOG_LEVEL": "WARNING",
}


@pytest.fixture
def web_processes(transactional_db, ledger_upstream, tmp_path, request):
    """Two web processes (scripts/web.sh) serving the slice's LLMs at the hostile upstream. They boot
    while the router is fitted; the first call each makes reads the LLMs as they are by then."""
    with web_pair(request, tmp_path, upstream_url=ledger_upstream.url, log_name="web", **REDTEAM_ENV) as servers:
        yield servers


# --- what the tenants send ------------------------------------------------------------------------------


class Script:
    """A tenant's calls, each tagged for the upstream's ledger: ``[rt:TAG directive…]`` starts its user text."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.calls: list[Call] = []

    def add(self, label: str, body: dict, **client) -> Call:
        call = Call(tag=f"{self.tenant}-{len(self.calls)}", tenant=self.tenant, label=label, body=body, **client)
        call.body = _tagged(body, call.tag)
        self.calls.append(call)
        return call

    def normal(self, count: int) -> None:
        """Ordinary calls: named or routed, JSON or streamed, with max_tokens."""
        for i in range(count):
            kind = i % 4
            if kind == 0:
                self.add("normal", chat(PRICIEST, max_tokens=40, directive="len=30"))
            elif kind == 1:
                self.add("normal stream", chat(PRO, max_tokens=40, stream=True, directive="len=30 chunk=5"))
            elif kind == 2:
                self.add("normal routed", chat("routerhub-auto", max_tokens=60, routerhub={"lambda": 0}))
            else:
                self.add("normal cheap", chat(FLASH, max_tokens=50, stream=True))


def chat(model: str, text: str = "Tell me about rivers and stones.", *, directive: str = "", **fields) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": f"{{directive:{directive}}} {text}"}], **fields}


def _tagged(body: dict, tag: str) -> dict:
    """The body with its directive placeholder turned into the call's tag (in the first text that has one)."""
    text = json.dumps(body)
    start = text.find("{directive:")
    if start < 0:
        raise AssertionError("every call carries a directive placeholder")
    end = text.find("}", start)
    directive = text[start + len("{directive:") : end]
    return json.loads(text[:start] + f"[rt:{tag} {directive}]" + text[end + 1 :])


def interleave(*scripts_calls: list[Call]) -> list[Call]:
    """Calls of one tenant mixed evenly (hostile among normal)."""
    longest = max(len(c) for c in scripts_calls)
    mixed = []
    for i in range(longest):
        for calls in scripts_calls:
            mixed.extend(calls[i : i + 1])
    return mixed


def poisoned_positions(bad: str) -> list[tuple[str, str | None, dict]]:
    """(label, the field the 400 must name, body) with ``bad`` (NUL or a lone surrogate) in one string each."""
    tool = {"type": "function", "function": {"name": "lookup", "description": "Look it up", "parameters": {}}}
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}

    def base(**fields) -> dict:
        return chat(FLASH, max_tokens=30, **fields)

    def with_message(**changes) -> dict:
        body = base()
        body["messages"][0].update(changes)
        return body

    tool_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q": "x' + bad + '"}'},
    }
    history = base()
    history["messages"] = [
        {"role": "user", "content": "Look up rivers."},
        {"role": "assistant", "content": None, "tool_calls": [tool_call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "found"},
        {"role": "user", "content": "{directive:} And then?"},
    ]
    system = base()
    system["messages"].insert(0, {"role": "system", "content": "Be brief." + bad})
    return [
        ("content", "messages", with_message(content="{directive:} Tell me" + bad + " a long story.")),
        ("text part", "messages", with_message(content=[{"type": "text", "text": "{directive:} hi" + bad}])),
        ("message name", "messages", with_message(name="bob" + bad)),
        ("system message", "messages", system),
        ("tool call arguments", "messages", history),
        ("tool description", "tools", base(tools=[{**tool, "function": {**tool["function"], "description": bad}}])),
        (
            "tool parameter name",
            "tools",
            base(tools=[{**tool, "function": {**tool["function"], "parameters": {"properties": {"q" + bad: {}}}}}]),
        ),
        ("tool_choice", "tool_choice", base(tools=[tool], tool_choice={"type": "function", "function": {"name": bad}})),
        (
            "response_format schema",
            "response_format",
            base(response_format={"type": "json_schema", "json_schema": {"name": "a" + bad, "schema": schema}}),
        ),
        ("stop", "stop", base(stop=["end" + bad])),
        ("user", "user", base(user="end-user" + bad)),
        ("metadata", "metadata", base(metadata={"k": "v" + bad})),
        ("a key", None, base(**{"x" + bad: 1})),
        ("model", "model", chat(FLASH + bad, max_tokens=30)),
        ("routerhub.models", "routerhub", chat("routerhub-auto", max_tokens=30, routerhub={"models": [FLASH + bad]})),
        ("stream_options", "stream_options", base(stream=True, stream_options={"include_usage": True, "x" + bad: 1})),
    ]


def tenants_with_keys(make_tenant, budgets: dict[str, tuple[str, dict]]) -> dict[str, str]:
    return {name: make_tenant(name=name, budget_usd=budget, **fields)[1] for name, (budget, fields) in budgets.items()}


# --- the runs ------------------------------------------------------------------------------------------------


def run(calls: list[Call], servers: list[WebServer], keys: dict[str, str], **options):
    return asyncio.run(burst(calls, servers, keys, **options))


def finish(servers: list[WebServer], upstream: UpstreamProcess) -> tuple[list[dict], dict[str, str]]:
    """Stop the web processes as an operator does (SIGTERM), note what each tenant still has leased,
    run the lease sweep once anything left has expired, and read the upstream's ledger."""
    for server in servers:
        server.stop()
    return upstream.settled_ledger(), sweep()


def sweep() -> dict[str, str]:
    """The periodic lease sweep, run once every lease left has expired; what each tenant had leased before.
    The web processes are stopped by then, so nothing renews a lease left: its expiry
    (``LEASE_SECONDS`` after its last renewal) is brought forward rather than waited for."""
    from routing.models import BudgetLease, BudgetPeriod
    from routing.tasks import reclaim_budget_leases

    leased = {p.tenant.name: str(p.leased_usd) for p in BudgetPeriod.objects.select_related("tenant") if p.leased_usd}
    BudgetLease.objects.filter(amount_usd__gt=0).update(expires_at=timezone.now() - timedelta(seconds=1))
    reclaim_budget_leases()
    return leased


def logs(servers: list[WebServer]) -> str:
    """What the web processes logged, without the tracebacks' frames: one line per message."""
    parts = []
    for server in servers:
        lines = [line for line in server.log().splitlines() if line and not line.startswith((" ", "Traceback"))]
        parts.append(f"--- web process {server.index}{' (killed)' if server.killed else ''}, last messages:")
        parts.extend(lines[-25:])
    return "\n".join(parts)


def verdict(findings, servers: list[WebServer], results, ledger, directory) -> None:
    """Fail listing every broken promise; every example, what each client saw and the upstream's ledger
    are kept in ``directory`` (pytest's tmp_path) for whoever debugs it."""
    if not findings.broken:
        return
    (directory / "findings.txt").write_text(findings.report(examples=10**6), errors="backslashreplace")
    seen = [
        {**{k: v for k, v in vars(r).items() if k != "call"}, "tag": r.call.tag, "label": r.call.label} for r in results
    ]
    (directory / "clients.json").write_text(json.dumps(seen, indent=1, default=str))
    (directory / "ledger.json").write_text(json.dumps(ledger, indent=1))
    pytest.fail(
        f"{findings.report()}\n{logs(servers)}\n(every example, the clients and the ledger: {directory})", pytrace=False
    )


def test_hostile_requests_never_take_a_budget_past_its_bound(web_processes, ledger_upstream, make_tenant, tmp_path):
    """NUL and lone surrogates in every string position, megabyte tool definitions, many image parts, a
    prompt whose first 4,000 characters count one token, no max_tokens against long answers, n: 5,
    fields that change the price, and the priciest LLM named after the budget is spent."""
    flash_and_priciest = list(LLM.objects.filter(name__in=[FLASH, PRICIEST]))
    keys = tenants_with_keys(
        make_tenant,
        {
            "poison": ("0.05", {}),
            "bulk": ("0.10", {}),
            "long": ("0.05", {}),
            "cheap": ("0.03", {"when_budget_spent": "cheapest", "allowed_llms": flash_and_priciest}),
            "squeeze": ("0.05", {}),
        },
    )

    poison = Script("poison")
    poison.normal(16)
    for bad, what in (("\u0000", "NUL"), ("\ud800", "lone surrogate")):
        for label, param, body in poisoned_positions(bad):
            poison.add(f"{what} in {label}", body, expect=Expect(status=(400,), param=param))
    poison.calls = interleave(poison.calls[:16], poison.calls[16:])

    bulk = Script("bulk")
    words = "river stone light green table music house paper "
    for model, size in ((PRICIEST, 1_000_000), (FLASH, 300_000)):
        tools = [{"type": "function", "function": {"name": "lookup", "description": words * (size // len(words))}}]
        bulk.add("megabyte tool definitions", chat(model, max_tokens=20, tools=tools))
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    for _ in range(3):
        content = [{"type": "text", "text": "{directive:} What is in these pictures?"}, *[image] * 200]
        bulk.add(
            "200 image parts", {"model": PRICIEST, "max_tokens": 20, "messages": [{"role": "user", "content": content}]}
        )
    for _ in range(2):
        bulk.add(
            "a prompt whose first 4,000 characters are one token",
            chat(PRICIEST, "x" * 4000 + " a" * 90_000, max_tokens=20),
        )
    # 2 % of the text is where its tokens are: sampled windows usually miss it, sometimes land in it
    sparse_then_dense = ("x" * 4000 + " ") * 47 + " a" * 1900
    for _ in range(8):
        bulk.add("a token-dense stretch in 2 % of a long prompt", chat(PRICIEST, sparse_then_dense, max_tokens=20))
    for _ in range(2):
        bulk.add("n: 5 without max_tokens, long answers", chat(PRICIEST, n=5, directive="len=1500"))
    bulk.normal(10)

    long = Script("long")
    for i in range(6):
        if i % 2:
            long.add("no max_tokens, a long streamed answer", chat(PRO, stream=True, directive="len=3000 chunk=50"))
        else:
            long.add("no max_tokens, a long answer", chat(PRICIEST, directive="len=3000"))
    billing = {
        "service_tier": {"service_tier": "priority"},
        "modalities": {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}},
        "web_search_options": {"web_search_options": {}},
    }
    for field, fields in billing.items():
        for _ in range(2):
            long.add(
                f"{field} changes the price",
                chat(PRICIEST, max_tokens=40, **fields),
                expect=Expect(status=(400, 402), param=field),
            )
    long.normal(8)

    cheap = Script("cheap")
    for _ in range(6):
        cheap.add("routed", chat("routerhub-auto", max_tokens=100, routerhub={"lambda": 0}))
    for _ in range(40):
        cheap.add("the priciest LLM, named", chat(PRICIEST, max_tokens=300, directive="len=300"))

    # One web process: an ordinary call takes a lease of the budget, then a call that cannot fit in
    # what is left is refused (402) — the lease it found too small must still go back.
    squeeze = Script("squeeze")
    for _ in range(4):
        squeeze.add("normal", chat(PRICIEST, max_tokens=40, directive="len=30"), server=0)
        content = [{"type": "text", "text": "{directive:} What is in these pictures?"}, *[image] * 200]
        body = {"model": PRICIEST, "max_tokens": 20, "messages": [{"role": "user", "content": content}]}
        squeeze.add("more than is left", body, server=0, expect=Expect(status=(402,)))

    calls = poison.calls + bulk.calls + long.calls + cheap.calls + squeeze.calls
    results = run(calls, web_processes, keys)
    ledger, leased = finish(web_processes, ledger_upstream)
    findings = audit(results=results, ledger=ledger, leased_at_stop=leased)
    verdict(findings, web_processes, results, ledger, tmp_path)


def test_hostile_upstreams_are_charged_what_they_billed(web_processes, ledger_upstream, make_tenant, tmp_path):
    """Upstreams that time out after taking the request, fail with 5xx, cut streams and JSON answers,
    never end a stream, send a 50 MB event or answer, lie about or omit usage; clients that leave."""
    keys = tenants_with_keys(
        make_tenant, {"slow": ("0.10", {}), "liar": ("0.10", {}), "flood": ("0.20", {}), "leaver": ("0.05", {})}
    )
    slow = Script("slow")
    for stream in (False, True, False, True):
        slow.add(
            "times out after taking the request",
            chat(PRICIEST, max_tokens=100, stream=stream, directive="act=timeout len=400"),
        )
    slow.add(
        "routed, every LLM times out",
        chat("routerhub-auto", max_tokens=100, routerhub={"lambda": 0}, directive="act=timeout len=400"),
    )
    for _ in range(2):
        slow.add("a JSON answer cut half-way", chat(PRO, max_tokens=80, directive="act=drop"))
        slow.add("5xx", chat(PRICIEST, max_tokens=80, directive="act=error status=503"))
    slow.add(
        "routed, every LLM fails with 5xx",
        chat("routerhub-auto", max_tokens=80, routerhub={"lambda": 0}, directive="act=error"),
    )
    slow.normal(10)

    liar = Script("liar")
    for usage in ("low", "high", "garbage", "none"):
        for stream in (False, True):
            liar.add(f"usage {usage}", chat(PRICIEST, max_tokens=60, stream=stream, directive=f"len=50 usage={usage}"))
    for _ in range(2):
        liar.add("a stream cut mid-way", chat(PRICIEST, max_tokens=60, stream=True, directive="len=60 act=drop drop=3"))
    liar.normal(8)

    flood = Script("flood")
    flood.add(
        "a 50 MB event",
        chat(FLASH, max_tokens=40, stream=True, directive="act=big_event"),
        expect=Expect(max_bytes=BIG, ended_by_gateway=True),
    )
    flood.add("a 50 MB answer", chat(FLASH, max_tokens=40, directive="act=big_json"), expect=Expect(max_bytes=BIG))
    for _ in range(2):
        flood.add(
            "a stream that never ends (keep-alive comments)",
            chat(FLASH, max_tokens=40, stream=True, directive="len=20 act=forever"),
            patience=30,
            expect=Expect(ended_by_gateway=True),
        )
    flood.normal(8)

    leaver = Script("leaver")
    for _ in range(3):
        leaver.add(
            "the client leaves a stream",
            chat(PRICIEST, max_tokens=200, stream=True, directive="len=200 chunk=2 delay=0.1"),
            leave_after_events=5,
        )
        leaver.add(
            "the client leaves before the JSON answer",
            chat(PRICIEST, max_tokens=300, directive="len=300 act=slow"),
            leave_after_seconds=1.5,
        )
    leaver.normal(8)

    results = run(slow.calls + liar.calls + flood.calls + leaver.calls, web_processes, keys)
    ledger, leased = finish(web_processes, ledger_upstream)
    findings = audit(results=results, ledger=ledger, leased_at_stop=leased)
    verdict(findings, web_processes, results, ledger, tmp_path)


def test_a_web_process_killed_mid_burst_loses_no_spend(web_processes, ledger_upstream, make_tenant, tmp_path):
    """SIGKILL one of the two web processes mid-burst, while both hold leases and calls are in flight,
    during a slow moment of the database (the tenants' budget rows held by another transaction for a
    few seconds, so calls admitted in memory are still waiting for their decisions' write); the other
    process carries on and stops; once the killed process's leases expire the sweep runs. What the
    upstream billed for the killed process's calls must still be counted, and nothing stay leased."""
    from routing.models import BudgetLease

    keys = tenants_with_keys(make_tenant, {"k1": ("0.05", {}), "k2": ("0.10", {}), "k3": ("0.05", {})})
    warm, calls = [], []
    for name in keys:
        script = Script(name)
        for server in (0, 1):  # each process loads what it needs and takes a lease of each budget
            warm.append(script.add("normal", chat(PRICIEST, max_tokens=40, directive="len=30"), server=server))
        for i in range(30):
            if i % 4 == 0:
                stream = chat(PRICIEST, max_tokens=60, stream=True, directive="len=60 chunk=3 delay=0.15")
                script.add("slow stream", stream)
            elif i % 4 == 1:
                script.add("normal stream", chat(PRO, max_tokens=40, stream=True, directive="len=30 chunk=5"))
            else:
                script.add("normal", chat(PRICIEST, max_tokens=40, directive="len=30"))
        calls += script.calls[2:]
    killed = web_processes[0]
    pid = killed.process.pid
    held = []

    def kill() -> None:

        try:
            held.append(BudgetLease.objects.filter(holder__contains=f":{pid}:").count())
        finally:
            connection.close()  # this thread's own connection
        killed.kill()

    results = run(warm, web_processes, keys)
    actions = [At(0.8, lambda: hold_budget_rows(list(keys), seconds=3.0)), At(2.5, kill)]
    results += run(calls, web_processes, keys, per_tenant=6, actions=actions)
    web_processes[1].stop()
    sweep()
    ledger = ledger_upstream.settled_ledger()
    assert held and held[0] > 0, "the killed web process held no lease: the run did not exercise the sweep"
    findings = audit(results=results, ledger=ledger, killed=0)
    findings.notes.insert(0, f"the killed process held {held[0]} lease(s) when it was killed")
    verdict(findings, web_processes, results, ledger, tmp_path)


def hold_budget_rows(tenants: list[str], *, seconds: float) -> None:
    """Lock the tenants' budget periods for ``seconds`` (another transaction; a slow moment of the database)."""
    from django.db import transaction

    from routing.models import BudgetPeriod

    try:
        with transaction.atomic():
            list(BudgetPeriod.objects.select_for_update().filter(tenant__name__in=tenants))
            time.sleep(seconds)
    finally:
        connection.close()  # this thread's own connection
