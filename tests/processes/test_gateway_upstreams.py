"""The gateway against upstreams that misbehave — never end, send too much, lie about usage, echo the
key in pieces, fail with words meant for staff — and what each call is then charged. A live ASGI
server, the real database, and fake upstreams scripted byte by byte."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time

import httpx
import openai
import pytest
from django.utils import timezone

from registry.models import LLM
from registry.tokens import count_tokens
from routing.caches import reset_all
from routing.models import BudgetPeriod, Decision
from tests.fakes.hostile_upstream import HostileUpstream, chunk, sse
from tests.fixtures.gateway import CHEAP, QUESTION, decision_json, price, settled, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORDS = ["Once", " upon", " a", " time", " there", " was", " a", " router", " that", " paid", " its", " bills."]


@pytest.fixture
def hostile():
    with HostileUpstream() as server:
        yield server


def served_by(upstream, *names: str) -> None:
    LLM.objects.filter(name__in=names).update(api_base=upstream.url, updated_at=timezone.now())
    reset_all()


def post(gateway, key: str, **body) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"messages": QUESTION, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def stream_lines(gateway, key: str, give_up_after: float = 15.0, **body) -> tuple[list[str], float]:
    """The data lines of a streamed call and how long it took; stops reading after ``give_up_after``
    seconds (a stream that never ends fails the test instead of hanging it)."""
    started = time.monotonic()
    lines = []
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"messages": QUESTION, "stream": True, **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=give_up_after,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                lines.append(line)
            if time.monotonic() - started > give_up_after:
                break
    return lines, time.monotonic() - started


def streamed_content(lines: list[str]) -> str:
    content = ""
    for line in lines:
        if line.startswith("data: {"):
            event = json.loads(line[6:])
            for choice in event.get("choices") or []:
                content += choice["delta"].get("content") or ""
    return content


async def words_then(body, reply, *, words=WORDS, usage=None):
    """Stream ``words``, a finishing chunk, ``usage`` (if given) and [DONE]."""
    await reply.start()
    for word in words:
        await reply.write(sse(chunk(body["model"], word)))
    await reply.write(sse(chunk(body["model"], finish="stop")))
    if usage is not None:
        await reply.write(sse({**chunk(body["model"]), "choices": [], "usage": usage}))
    await reply.write(b"data: [DONE]\n\n")


# --- an upstream that never ends ------------------------------------------------------------------------


def test_keep_alive_comments_forever_end_at_the_deadline_with_a_timeout_naming_the_llm(
    gateway, gateway_llms, tenant_and_key, hostile, settings
):
    settings.ROUTERHUB_UPSTREAM_DEADLINE_SECONDS = 2
    tenant, key = tenant_and_key

    async def words_then_keep_alive(body, reply):
        await reply.start()
        for word in WORDS[:4]:
            await reply.write(sse(chunk(body["model"], word)))
        while await reply.write(b": keep-alive\n\n"):
            await reply.wait(0.05)

    hostile.scripts[CHEAP] = words_then_keep_alive
    served_by(hostile, CHEAP)
    lines, took = stream_lines(gateway, key, model=CHEAP, max_tokens=50)
    assert took < 2 + 3  # the deadline, and a little for the server's own work
    *chunks, error, done = lines
    assert streamed_content(chunks) == "Once upon a time" and done == "data: [DONE]"
    message = json.loads(error[6:])["error"]["message"]
    assert CHEAP in message and "timeout" in message and "deadline of 2 s" in message
    assert wait_for(lambda: hostile.calls[-1].ended) == "disconnected"
    settled()
    decision = Decision.objects.get()
    assert decision.call_status == "interrupted" and "timeout" in decision.attempts[0]["error"]
    # cut off by routerhub, so the provider may have produced all it was allowed to: charged that
    assert decision.output_tokens == 50 and decision.input_tokens == decision.prompt_tokens
    assert decision.actual_cost_usd == price(CHEAP, decision.prompt_tokens, 50)
    assert BudgetPeriod.objects.get(tenant=tenant).spent_usd == decision.actual_cost_usd


def test_a_json_answer_sent_a_byte_at_a_time_forever_ends_at_the_deadline_as_a_504(
    gateway, gateway_llms, tenant_and_key, hostile, settings
):
    settings.ROUTERHUB_UPSTREAM_DEADLINE_SECONDS = 2
    _, key = tenant_and_key

    async def dribble(body, reply):
        await reply.start(200, "application/json")
        while await reply.write(b" "):
            await reply.wait(0.05)

    hostile.scripts[CHEAP] = dribble
    served_by(hostile, CHEAP)
    started = time.monotonic()
    response = post(gateway, key, model=CHEAP, max_tokens=50)
    assert time.monotonic() - started < 2 + 3
    error = response.json()["error"]
    assert response.status_code == 504 and error["code"] == "upstream_timeout"
    assert CHEAP in error["message"] and "timeout" in error["message"]
    assert wait_for(lambda: hostile.calls[-1].ended) == "disconnected"
    settled()
    decision = Decision.objects.get()
    assert decision.call_status == "failed"
    assert decision.actual_cost_usd == price(CHEAP, decision.prompt_tokens, 50)


# --- an upstream that sends too much --------------------------------------------------------------------


def test_an_oversized_json_answer_is_cut_off_with_a_bounded_error(
    gateway, gateway_llms, tenant_and_key, hostile, monkeypatch
):
    from routing.gateway import calls

    monkeypatch.setattr(calls, "MAX_ANSWER_BYTES", 2**20)
    _, key = tenant_and_key

    async def fifty_megabytes(body, reply):
        await reply.start(200, "application/json")
        await reply.write(b'{"choices": [{"index": 0, "message": {"content": "')
        for _ in range(50):
            if not await reply.write(b"x" * 2**20):
                return
        await reply.write(b'"}}]}')

    hostile.scripts[CHEAP] = fifty_megabytes
    served_by(hostile, CHEAP)
    response = post(gateway, key, model=CHEAP, max_tokens=50)
    assert response.status_code == 502 and len(response.content) < 2000
    message = response.json()["error"]["message"]
    assert CHEAP in message and "larger than 1 MiB" in message
    assert wait_for(lambda: hostile.calls[-1].ended) == "disconnected" and hostile.calls[-1].sent < 50 * 2**20
    settled()
    decision = Decision.objects.get()
    assert decision.call_status == "failed" and decision.attempts[0]["outcome"] == "too_large"
    assert decision.actual_cost_usd == price(CHEAP, decision.prompt_tokens, 50)  # the provider did the work


def test_a_50_mb_event_cuts_the_stream_off(gateway, gateway_llms, tenant_and_key, hostile):
    _, key = tenant_and_key

    async def huge_event(body, reply):
        await reply.start()
        await reply.write(sse(chunk(body["model"], "Hello")))
        await reply.write(b'data: {"choices": [{"index": 0, "delta": {"content": "')
        for _ in range(50):
            if not await reply.write(b"x" * 2**20):
                return
        await reply.write(b'"}}]}\n\ndata: [DONE]\n\n')

    hostile.scripts[CHEAP] = huge_event
    served_by(hostile, CHEAP)
    lines, _ = stream_lines(gateway, key, model=CHEAP, max_tokens=50)
    assert streamed_content(lines) == "Hello" and sum(len(line) for line in lines) < 2000
    message = json.loads(lines[-2][6:])["error"]["message"]
    assert CHEAP in message and "event larger than 4 MiB" in message and lines[-1] == "data: [DONE]"
    assert wait_for(lambda: hostile.calls[-1].ended) == "disconnected" and hostile.calls[-1].sent < 50 * 2**20
    settled()
    decision = Decision.objects.get()
    assert decision.call_status == "interrupted" and decision.attempts[0]["outcome"] == "interrupted"
    assert decision.actual_cost_usd == price(CHEAP, decision.prompt_tokens, 50)


# --- the key, cut in two ------------------------------------------------------------------------------------


def test_the_llms_key_cut_across_two_streamed_chunks_never_reaches_the_client(
    gateway, gateway_llms, tenant_and_key, hostile
):
    from registry.services import llm_update

    _, key = tenant_and_key
    llm_update(llm=LLM.objects.get(name=CHEAP), api_key="sk-upstream-secret-123")

    async def echo_the_key_in_two(body, reply):
        secret = reply.call.headers["authorization"].removeprefix("Bearer ")
        await words_then(body, reply, words=["your key is ", secret[:13], secret[13:] + " ok"])

    hostile.scripts[CHEAP] = echo_the_key_in_two
    served_by(hostile, CHEAP)
    lines, _ = stream_lines(gateway, key, model=CHEAP)
    assert streamed_content(lines) == "your key is [redacted] ok"
    assert "sk-upstream" not in "".join(lines)


# --- what tenants see of failures -----------------------------------------------------------------------


def test_failures_name_the_llm_and_status_never_addresses_variables_or_upstream_bodies(
    gateway, gateway_llms, tenant_and_key, hostile, monkeypatch
):
    _, key = tenant_and_key
    no_key, private, closed, failing, refusing = (
        LLM.objects.exclude(name=CHEAP).order_by("name").values_list("name", flat=True)[:5]
    )
    monkeypatch.delenv("ROUTERHUB_LLM_KEY_NOT_SET", raising=False)
    LLM.objects.filter(name=no_key).update(api_key_env="ROUTERHUB_LLM_KEY_NOT_SET")
    LLM.objects.filter(name=private).update(api_base="http://10.1.2.3:8000/v1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: connections are refused
    LLM.objects.filter(name=closed).update(api_base=f"http://127.0.0.1:{port}/v1")

    async def internal_error(body, reply):
        await reply.json({"error": {"message": "pod llm-7f9c at 10.9.8.7:8443 failed"}}, status=500)

    async def bad_request(body, reply):
        said = "bad request from 10.9.8.7 to 127.0.0.1 (ROUTERHUB_INTERNAL_FLAG)"
        await reply.json({"error": {"message": said, "type": "invalid_request_error", "param": "messages"}}, 400)

    hostile.scripts.update({failing: internal_error, refusing: bad_request})
    served_by(hostile, failing, refusing)
    expected = [
        (no_key, 502, "its API key is not configured"),
        (private, 502, "its endpoint's address may not be called"),
        (closed, 502, "the connection failed"),
        (failing, 502, "HTTP 500"),
        (refusing, 400, "refused the request (HTTP 400): bad request from [address] to [host] ([setting])"),
    ]
    for name, status, says in expected:
        response = post(gateway, key, model=name)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert name in error["message"] and says in error["message"]
        record = decision_json(gateway, key, response.headers["x-routerhub-decision-id"])
        shown = response.text + json.dumps(record["call"])  # (the decision's llm is the route API's LLM reference)
        for hidden in ("10.1.2.3", "10.9.8.7", "127.0.0.1", "ROUTERHUB_", "llm-7f9c"):
            assert hidden not in shown, (
                name,
                hidden,
                shown[max(0, shown.find(hidden) - 200) : shown.find(hidden) + 60],
            )
    assert json.loads(post(gateway, key, model=refusing).text)["error"]["param"] == "messages"
    settled()
    # staff keep the detail (Decision.attempts, shown in the admin)
    detail = {d.llm.name: d.attempts[0].get("detail", "") for d in Decision.objects.select_related("llm")}
    assert "ROUTERHUB_LLM_KEY_NOT_SET" in detail[no_key] and "10.1.2.3" in detail[private]
    assert "llm-7f9c at 10.9.8.7" in detail[failing] and "ROUTERHUB_INTERNAL_FLAG" in detail[refusing]
    assert not Decision.objects.exclude(actual_cost_usd=0).exists()  # none of them billed


# --- what calls are charged ----------------------------------------------------------------------------


def test_a_timeout_after_the_request_was_sent_is_charged_its_output_share(
    gateway, gateway_llms, upstream, openai_client, tenant_and_key, settings
):
    tenant, _ = tenant_and_key
    settings.ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS = 0.5
    upstream.set_behaviour(CHEAP, latency_seconds=3)
    with pytest.raises(openai.APIStatusError) as failure:
        openai_client.chat.completions.create(model=CHEAP, messages=QUESTION, max_tokens=50)
    assert failure.value.status_code == 504
    assert (
        CHEAP in failure.value.body["message"] and "no answer within 0.5 s (timeout)" in failure.value.body["message"]
    )
    settled()
    decision = Decision.objects.get()
    charge = price(CHEAP, decision.prompt_tokens, 50)
    assert decision.call_status == "failed" and decision.actual_cost_usd == charge == decision.estimated_cost_usd
    assert (decision.input_tokens, decision.output_tokens) == (decision.prompt_tokens, 50)
    assert decision.attempts[0]["charged_usd"] == float(charge)
    assert BudgetPeriod.objects.get(tenant=tenant).spent_usd == charge


def test_a_timed_out_first_choice_is_charged_and_its_fallbacks_answer_added(
    gateway, gateway_llms, upstream, openai_client, tenant_and_key, settings
):
    from tests.fixtures.gateway import ranking

    tenant, key = tenant_and_key
    settings.ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS = 0.5
    first, second = ranking(key, **{"lambda": 0})[:2]
    upstream.set_behaviour(first, latency_seconds=3)
    completion = openai_client.chat.completions.create(
        model="routerhub-auto", messages=QUESTION, max_tokens=50, extra_body={"routerhub": {"lambda": 0}}
    )
    assert completion.model == second
    settled()
    decision = Decision.objects.get(tenant=tenant)
    timed_out = price(first, decision.prompt_tokens, 50)
    answered = price(second, completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert decision.actual_cost_usd == timed_out + answered
    assert decision.output_tokens == 50 + completion.usage.completion_tokens
    assert BudgetPeriod.objects.get(tenant=tenant).spent_usd == decision.actual_cost_usd


def test_a_client_that_leaves_a_json_call_pays_for_the_answer_the_provider_still_makes(
    gateway, gateway_llms, upstream, tenant_and_key
):
    tenant, key = tenant_and_key
    upstream.set_behaviour(CHEAP, latency_seconds=2)

    async def leave_once_the_llm_has_the_call():
        async with httpx.AsyncClient(timeout=30) as client:
            call = asyncio.ensure_future(
                client.post(
                    gateway.url + "/v1/chat/completions",
                    json={"model": CHEAP, "messages": QUESTION, "max_tokens": 50},
                    headers={"Authorization": f"Bearer {key}"},
                )
            )
            while not upstream.calls:
                await asyncio.sleep(0.02)
            call.cancel()  # closes the connection
            with contextlib.suppress(asyncio.CancelledError):
                await call

    asyncio.run(leave_once_the_llm_has_the_call())
    decision = wait_for(lambda: Decision.objects.exclude(call_status="pending").first())
    assert decision.call_status == "cancelled"
    assert decision.actual_cost_usd == price(CHEAP, decision.prompt_tokens, 50)
    settled()
    assert BudgetPeriod.objects.get(tenant=tenant).spent_usd == decision.actual_cost_usd


def test_usage_below_what_was_streamed_or_above_what_was_allowed_is_not_believed(
    gateway, gateway_llms, tenant_and_key, hostile
):
    _, key = tenant_and_key
    lies = [
        {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        {"prompt_tokens": 10**9, "completion_tokens": 10**9, "total_tokens": 2 * 10**9},
    ]

    async def lying(body, reply):
        await words_then(body, reply, usage=lies[len(hostile.calls) - 1])

    hostile.scripts[CHEAP] = lying
    served_by(hostile, CHEAP)
    too_little, _ = stream_lines(gateway, key, model=CHEAP, max_tokens=50)
    too_much, _ = stream_lines(gateway, key, model=CHEAP, max_tokens=50)
    assert streamed_content(too_little) == streamed_content(too_much) == "".join(WORDS)
    settled()
    low, high = Decision.objects.order_by("created_at")
    streamed = count_tokens(["".join(WORDS)])[0]
    # reported less than it sent: routerhub's own count of the prompt and of the streamed text
    assert (low.input_tokens, low.output_tokens) == (low.prompt_tokens, streamed)
    assert low.actual_cost_usd == price(CHEAP, low.prompt_tokens, streamed)
    # reported more than it was allowed to produce: max_tokens, and the prompt the call reserved
    assert (high.input_tokens, high.output_tokens) == (high.prompt_tokens, 50)
    assert high.actual_cost_usd == price(CHEAP, high.prompt_tokens, 50)


def test_a_stream_the_upstream_drops_is_charged_what_was_streamed(gateway, gateway_llms, tenant_and_key, hostile):
    _, key = tenant_and_key

    async def dropped(body, reply):
        await reply.start()
        for word in WORDS[:6]:
            await reply.write(sse(chunk(body["model"], word)))
        raise ConnectionAbortedError("the upstream drops the stream")  # uvicorn closes the connection

    hostile.scripts[CHEAP] = dropped
    served_by(hostile, CHEAP)
    lines, _ = stream_lines(gateway, key, model=CHEAP, max_tokens=50)
    assert streamed_content(lines) == "".join(WORDS[:6])
    assert CHEAP in json.loads(lines[-2][6:])["error"]["message"]
    settled()
    decision = Decision.objects.get()
    streamed = count_tokens(["".join(WORDS[:6])])[0]
    assert decision.call_status == "interrupted" and decision.output_tokens == streamed
    assert decision.actual_cost_usd == price(CHEAP, decision.prompt_tokens, streamed)
