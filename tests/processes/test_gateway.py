"""The OpenAI-compatible gateway against a live ASGI server, called with the real OpenAI SDK, and a fake
upstream that streams, fails with 500 / 429, times out, drops streams and omits usage."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import httpx
import openai
import pytest
from django.db.models import Sum
from django.utils import timezone

from registry.models import LLM
from routerhub.demo_upstream import openai_prompt_tokens
from routing.caches import reset_all
from routing.models import BudgetLease, BudgetPeriod, Decision, GatewayExchange, Preset, Tenant
from tests.fixtures.api import ROUTE, ApiClient
from tests.fixtures.gateway import CHEAP, QUESTION, decision_json, price, ranking, settled, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# --- routing, direct names, headers and records --------------------------------------------------


def test_routerhub_auto_routes_calls_and_records_the_call(
    gateway, gateway_llms, upstream, openai_client, tenant_and_key
):
    tenant, key = tenant_and_key
    expected = ranking(key, **{"lambda": 0})[0]
    raw = openai_client.chat.completions.with_raw_response.create(
        model="routerhub-auto", messages=QUESTION, extra_body={"routerhub": {"lambda": 0}}
    )
    completion = raw.parse()
    assert completion.model == expected == raw.headers["x-routerhub-model"]
    assert completion.choices[0].message.content == f"{expected} heard: {QUESTION[0]['content']}"
    assert upstream.calls[-1].model == expected and upstream.calls[-1].body["messages"] == QUESTION
    assert "routerhub" not in upstream.calls[-1].body  # routerhub's options never go upstream
    cost = price(expected, completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert Decimal(raw.headers["x-routerhub-cost-usd"]) == cost
    record = decision_json(gateway, key, raw.headers["x-routerhub-decision-id"])
    assert record["source"] == "gateway" and record["llm"]["name"] == expected and record["lambda_used"] == 0
    call = record["call"]
    assert call["status"] == "ok" and [a["llm"] for a in call["attempts"]] == [expected]
    assert call["attempts"][0]["outcome"] == "ok" and call["attempts"][0]["status"] == 200
    assert call["input_tokens"] == completion.usage.prompt_tokens
    assert call["output_tokens"] == completion.usage.completion_tokens
    assert Decimal(str(call["cost_usd"])) == cost and record["counted_usd"] == float(cost)
    assert call["latency_ms"] > 0 and 0 < call["ttft_ms"] <= call["latency_ms"]
    settled()
    assert BudgetPeriod.objects.get(tenant=tenant).spent_usd == cost


def test_a_registered_llm_name_is_called_directly_and_metered(
    gateway, gateway_llms, upstream, openai_client, tenant_and_key
):
    tenant, key = tenant_and_key
    raw = openai_client.chat.completions.with_raw_response.create(model=CHEAP, messages=QUESTION, max_tokens=50)
    completion = raw.parse()
    assert completion.model == CHEAP and upstream.calls[-1].model == CHEAP
    settled()
    decision = Decision.objects.get(id=raw.headers["x-routerhub-decision-id"])
    assert decision.lambda_reason == "direct" and decision.predicted_quality is None and decision.alternatives == []
    # reserved before the call: the prompt as counted by routerhub plus max_tokens of output
    assert decision.estimated_cost_usd == price(CHEAP, decision.prompt_tokens, 50)
    assert decision.actual_cost_usd == price(CHEAP, completion.usage.prompt_tokens, completion.usage.completion_tokens)
    assert BudgetPeriod.objects.get(tenant=tenant).spent_usd == decision.actual_cost_usd


def test_calls_are_admitted_from_a_budget_lease_that_goes_back_when_the_server_stops(
    gateway, gateway_llms, openai_client, tenant_and_key
):
    tenant, _ = tenant_and_key
    ids = [
        openai_client.chat.completions.with_raw_response.create(model=CHEAP, messages=QUESTION, max_tokens=50).headers[
            "x-routerhub-decision-id"
        ]
        for _ in range(3)
    ]
    settled()
    period = BudgetPeriod.objects.get(tenant=tenant)
    lease = BudgetLease.objects.get(period=period)  # one web process: one lease, taken by the first call
    estimate = Decision.objects.get(id=ids[0]).estimated_cost_usd
    assert lease.amount_usd == period.leased_usd == estimate * 17  # 20 calls' estimates, 3 used
    assert Decision.objects.filter(id__in=ids, call_status="ok").count() == 3
    gateway.stop()
    period.refresh_from_db()
    assert period.leased_usd == 0 and not BudgetLease.objects.exists()
    assert period.spent_usd == Decision.objects.filter(id__in=ids).aggregate(s=Sum("actual_cost_usd"))["s"] > 0
    assert period.requests == 3


def test_a_json_answer_does_not_wait_for_its_metering_and_survives_it_failing(
    gateway, gateway_llms, openai_client, tenant_and_key, monkeypatch, caplog
):
    from routing.gateway import settlement

    tenant, _ = tenant_and_key

    def database_fails(**kwargs):
        time.sleep(3)
        raise RuntimeError("the database went away")

    openai_client.chat.completions.create(model=CHEAP, messages=QUESTION)  # warm: router and connections loaded
    settled()
    spent_before = BudgetPeriod.objects.get(tenant=tenant).spent_usd
    monkeypatch.setattr(settlement, "gateway_finish", database_fails)
    started = time.monotonic()
    raw = openai_client.chat.completions.with_raw_response.create(model=CHEAP, messages=QUESTION, max_tokens=50)
    assert time.monotonic() - started < 2  # answered before the (slow) metering ended
    usage = raw.parse().usage
    assert Decimal(raw.headers["x-routerhub-cost-usd"]) == price(CHEAP, usage.prompt_tokens, usage.completion_tokens)
    wait_for(lambda: "metering a gateway call failed" in caplog.text)
    decision = Decision.objects.get(id=raw.headers["x-routerhub-decision-id"])
    # unmetered, the call counts its reservation: the prompt and max_tokens of output, at least its cost
    assert decision.call_status == "pending" and decision.reserved_usd == price(CHEAP, decision.prompt_tokens, 50)
    spent = BudgetPeriod.objects.get(tenant=tenant).spent_usd - spent_before
    assert spent == decision.reserved_usd >= Decimal(raw.headers["x-routerhub-cost-usd"])


def test_the_api_model_replaces_model_and_every_other_field_passes_through(
    gateway, gateway_llms, upstream, openai_client
):
    LLM.objects.filter(name=CHEAP).update(api_model="provider/flash-latest")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look it up",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}}
    completion = openai_client.chat.completions.create(
        model=CHEAP,
        messages=QUESTION,
        tools=tools,
        tool_choice="auto",
        response_format=schema,
        temperature=0.3,
        seed=7,
        stop=["\n\n"],
        user="end-user-42",
    )
    sent = upstream.calls[-1].body
    assert sent["model"] == "provider/flash-latest" and completion.model == CHEAP
    assert sent["tools"] == tools and sent["tool_choice"] == "auto" and sent["response_format"] == schema
    assert (sent["temperature"], sent["seed"], sent["stop"], sent["user"]) == (0.3, 7, ["\n\n"], "end-user-42")


def test_models_lists_routing_presets_and_the_tenants_llms(gateway, gateway_llms, openai_client, tenant_and_key):
    tenant, _ = tenant_and_key
    Preset.objects.create(tenant=tenant, name="cheap", lambda_value=1000)
    tenant.allowed_llms.set(LLM.objects.filter(name__in=[CHEAP, "DeepSeek-Coder-V2"]))
    ids = [model.id for model in openai_client.models.list()]
    assert ids == ["routerhub-auto", "routerhub-auto:cheap", "DeepSeek-Coder-V2", CHEAP]


# --- presets ----------------------------------------------------------------------------------------


def test_presets_route_with_their_options_and_their_llms(
    gateway, gateway_llms, upstream, openai_client, tenant_and_key
):
    tenant, key = tenant_and_key
    cheap = Preset.objects.create(tenant=tenant, name="cheap", lambda_value=1e6)
    best = Preset.objects.create(tenant=tenant, name="best", lambda_value=0)
    only_two = Preset.objects.create(tenant=tenant, name="two", lambda_value=0)
    only_two.allowed_llms.set(LLM.objects.filter(name__in=[CHEAP, "DeepSeek-Coder-V2"]))
    assert (
        openai_client.chat.completions.create(model="routerhub-auto:cheap", messages=QUESTION).model
        == ranking(key, **{"lambda": 1e6})[0]
        != ranking(key, **{"lambda": 0})[0]
    )
    assert (
        openai_client.chat.completions.create(model="routerhub-auto:best", messages=QUESTION).model
        == ranking(key, **{"lambda": 0})[0]
    )
    two = openai_client.chat.completions.create(model="routerhub-auto:two", messages=QUESTION).model
    assert two == ranking(key, **{"lambda": 0, "models": [CHEAP, "DeepSeek-Coder-V2"]})[0]
    # the request's own options win over the preset's
    assert (
        openai_client.chat.completions.create(
            model="routerhub-auto:cheap", messages=QUESTION, extra_body={"routerhub": {"lambda": 0}}
        ).model
        == ranking(key, **{"lambda": 0})[0]
    )
    settled()
    recorded = Decision.objects.filter(tenant=tenant).order_by("created_at").values_list("request", flat=True)
    assert [r.get("preset") for r in recorded] == ["cheap", "best", "two", "cheap"]
    assert cheap.model_name == "routerhub-auto:cheap" and best.name == "best"
    with pytest.raises(openai.NotFoundError, match="routerhub-auto:other"):
        openai_client.chat.completions.create(model="routerhub-auto:other", messages=QUESTION)
    other, _ = Tenant.objects.get_or_create(name="other", defaults={"budget_usd": 1})
    Preset.objects.create(tenant=other, name="secret", lambda_value=0)
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(model="routerhub-auto:secret", messages=QUESTION)


# --- fallbacks ----------------------------------------------------------------------------------------


def test_fallbacks_follow_the_ranking_and_every_attempt_is_recorded(
    gateway, gateway_llms, upstream, openai_client, tenant_and_key, settings
):
    _, key = tenant_and_key
    first, second, third = ranking(key, **{"lambda": 0})[:3]
    upstream.set_behaviour(first, status=500)
    upstream.set_behaviour(second, status=429)
    raw = openai_client.chat.completions.with_raw_response.create(
        model="routerhub-auto", messages=QUESTION, extra_body={"routerhub": {"lambda": 0}}
    )
    assert raw.parse().model == third == raw.headers["x-routerhub-model"]
    assert [c.model for c in upstream.calls] == [first, second, third]
    call = decision_json(gateway, key, raw.headers["x-routerhub-decision-id"])["call"]
    assert [(a["llm"], a["outcome"], a["status"]) for a in call["attempts"]] == [
        (first, "http_500", 500),
        (second, "http_429", 429),
        (third, "ok", 200),
    ]
    assert call["attempts"][0]["error"] == "HTTP 500" and "fake failure" not in json.dumps(call)  # for tenants
    settled()
    decision = Decision.objects.get(id=raw.headers["x-routerhub-decision-id"])
    assert "fake failure 500" in decision.attempts[0]["detail"]  # the upstream's words, for staff
    assert decision.llm.name == third  # the decision, and its reservation, moved to the LLM that answered


def test_a_timeout_before_the_first_byte_falls_back_and_all_failing_is_a_502(
    gateway, gateway_llms, upstream, openai_client, tenant_and_key, settings
):
    _, key = tenant_and_key
    settings.ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS = 0.5
    settings.ROUTERHUB_GATEWAY_MAX_ATTEMPTS = 2
    first, second, third = ranking(key, **{"lambda": 0})[:3]
    upstream.set_behaviour(first, latency_seconds=3)
    completion = openai_client.chat.completions.create(
        model="routerhub-auto", messages=QUESTION, extra_body={"routerhub": {"lambda": 0}}
    )
    assert completion.model == second
    upstream.set_behaviour(second, status=503)
    with pytest.raises(openai.APIStatusError) as failure:
        openai_client.chat.completions.create(
            model="routerhub-auto", messages=QUESTION, extra_body={"routerhub": {"lambda": 0}}
        )
    assert failure.value.status_code == 502
    assert failure.value.body["code"] == "upstream_failed" and failure.value.body["type"] == "upstream_error"
    assert third not in [c.model for c in upstream.calls]  # at most ROUTERHUB_GATEWAY_MAX_ATTEMPTS LLMs
    settled()
    decision = Decision.objects.order_by("created_at").last()
    # the first timed out after the request was sent: charged the prompt and the output reserved (no
    # max_tokens: the default one sent); the 503 is not charged
    charged = price(first, decision.prompt_tokens, settings.ROUTERHUB_GATEWAY_DEFAULT_MAX_TOKENS)
    assert decision.call_status == "failed" and decision.reserved_usd == decision.actual_cost_usd == charged
    assert [a["outcome"] for a in decision.attempts] == ["timeout", "http_503"]
    upstream.set_behaviour(second, status=None, latency_seconds=3)
    with pytest.raises(openai.APIStatusError) as timed_out:
        openai_client.chat.completions.create(
            model="routerhub-auto", messages=QUESTION, extra_body={"routerhub": {"lambda": 0}}
        )
    assert timed_out.value.status_code == 504 and timed_out.value.body["code"] == "upstream_timeout"


def test_other_4xx_from_the_llm_are_returned_as_they_are_without_fallback(
    gateway, gateway_llms, upstream, openai_client, tenant_and_key
):
    tenant, key = tenant_and_key
    first = ranking(key, **{"lambda": 0})[0]
    body = json.dumps({"error": {"message": "context too long for this model", "type": "invalid_request_error"}})
    upstream.set_behaviour(first, status=400, error_body=body)
    with pytest.raises(openai.BadRequestError, match="context too long for this model"):
        openai_client.chat.completions.create(
            model="routerhub-auto", messages=QUESTION, extra_body={"routerhub": {"lambda": 0}}
        )
    assert [c.model for c in upstream.calls] == [first]
    settled()
    decision = Decision.objects.get()
    assert decision.call_status == "client_error" and decision.actual_cost_usd == 0
    assert BudgetPeriod.objects.get(tenant=tenant).spent_usd == 0


def test_a_redirect_is_not_followed(gateway, gateway_llms, upstream, openai_client):
    upstream.set_behaviour(CHEAP, redirect_to="http://169.254.169.254/latest/meta-data/")
    with pytest.raises(openai.APIStatusError) as failure:
        openai_client.chat.completions.create(model=CHEAP, messages=QUESTION)
    assert failure.value.status_code == 502
    assert [c.model for c in upstream.calls] == [CHEAP]
    settled()
    assert Decision.objects.get().attempts[0]["outcome"] == "http_307"


# --- streaming --------------------------------------------------------------------------------------


def test_streams_are_relayed_chunk_by_chunk_with_usage_and_done(gateway, gateway_llms, upstream, openai_client):
    upstream.set_behaviour(CHEAP, chunk_delay_seconds=0.15)
    arrivals, pieces = [], []
    stream = openai_client.chat.completions.create(
        model=CHEAP, messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    for chunk in stream:
        arrivals.append(time.monotonic())
        assert chunk.model == CHEAP
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(pieces) == f"{CHEAP} heard: {QUESTION[0]['content']}"
    # relayed as they came: the chunks arrived over the upstream's pace, not in one burst at the end
    assert arrivals[-1] - arrivals[0] > 0.15 * (len(arrivals) - 3)
    assert upstream.calls[-1].body["stream_options"] == {"include_usage": True}
    settled()
    decision = Decision.objects.get()
    assert decision.call_status == "ok" and decision.output_tokens == usage.completion_tokens
    assert decision.actual_cost_usd == price(CHEAP, usage.prompt_tokens, usage.completion_tokens)
    assert 0 < decision.ttft_ms < decision.latency_ms


def test_a_stream_without_include_usage_gets_none_but_is_metered(gateway, gateway_llms, upstream, openai_client):
    chunks = list(openai_client.chat.completions.create(model=CHEAP, messages=QUESTION, stream=True))
    assert all(chunk.usage is None for chunk in chunks) and all(chunk.choices for chunk in chunks)
    assert upstream.calls[-1].body["stream_options"] == {"include_usage": True}  # asked upstream anyway
    settled()
    decision = Decision.objects.get()
    prompt = openai_prompt_tokens(QUESTION)
    assert decision.input_tokens == prompt and decision.actual_cost_usd == price(CHEAP, prompt, decision.output_tokens)


def test_an_upstream_without_usage_is_metered_by_counting_tokens(gateway, gateway_llms, upstream, openai_client):
    from registry.tokens import count_tokens

    upstream.set_behaviour(CHEAP, omit_usage=True)
    completion = openai_client.chat.completions.create(model=CHEAP, messages=QUESTION)
    assert completion.usage is None
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in openai_client.chat.completions.create(model=CHEAP, messages=QUESTION, stream=True)
        if c.choices
    )
    assert streamed == completion.choices[0].message.content
    settled()
    assert Decision.objects.count() == 2
    for decision in Decision.objects.all():
        assert decision.input_tokens == decision.prompt_tokens  # routerhub's own count of the prompt
        assert decision.output_tokens == count_tokens([streamed])[0]
        assert decision.actual_cost_usd == price(CHEAP, decision.prompt_tokens, decision.output_tokens) > 0


def test_a_stream_dropped_after_its_first_byte_ends_with_an_openai_error_event(
    gateway, gateway_llms, upstream, openai_client, tenant_and_key
):
    tenant, _ = tenant_and_key
    upstream.set_behaviour(CHEAP, drop_after_chunks=3)
    received = []
    with pytest.raises(openai.APIError, match="stream"):
        for chunk in openai_client.chat.completions.create(model=CHEAP, messages=QUESTION, stream=True):
            received.append(chunk)
    assert len(received) == 3 and upstream.calls[-1].ended == "dropped"
    assert len(upstream.calls) == 1  # no fallback once the client has bytes
    settled()
    decision = Decision.objects.get()
    assert decision.call_status == "interrupted" and decision.attempts[0]["outcome"] == "interrupted"
    assert decision.output_tokens > 0 and decision.actual_cost_usd > 0  # what was produced is paid for
    assert BudgetPeriod.objects.get(tenant=tenant).spent_usd == decision.actual_cost_usd


def test_a_client_that_disconnects_cancels_the_upstream_and_what_was_used_is_metered(
    gateway, gateway_llms, upstream, tenant_and_key
):
    from registry.tokens import count_tokens

    tenant, key = tenant_and_key
    upstream.answer = lambda model, text: " ".join(f"word{i}" for i in range(200))
    upstream.set_behaviour(CHEAP, chunk_delay_seconds=0.05)
    received = ""
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json={"model": CHEAP, "messages": QUESTION, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                received += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            if received.count("word") >= 5:
                break
    decision = wait_for(lambda: Decision.objects.exclude(call_status="pending").first())
    assert wait_for(lambda: upstream.calls[-1].ended) == "disconnected"
    assert upstream.calls[-1].chunks_sent < 100  # it stopped long before its 200 words
    assert decision.call_status == "cancelled" and decision.attempts[-1]["outcome"] == "cancelled"
    assert count_tokens([received])[0] <= decision.output_tokens < count_tokens([upstream.answer(CHEAP, "")])[0]
    assert decision.input_tokens == decision.prompt_tokens
    assert decision.actual_cost_usd == price(CHEAP, decision.prompt_tokens, decision.output_tokens)
    settled()
    assert BudgetPeriod.objects.get(tenant=tenant).spent_usd == decision.actual_cost_usd


def test_the_async_client_streams_concurrently(gateway, gateway_llms, upstream, tenant_and_key):
    upstream.set_behaviour(CHEAP, chunk_delay_seconds=0.25)  # 6 chunks: each stream lasts over a second

    async def main():
        async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=tenant_and_key[1], max_retries=0) as client:

            async def one(i):
                stream = await client.chat.completions.create(
                    model=CHEAP, messages=[{"role": "user", "content": f"question {i}"}], stream=True
                )
                first, text = None, ""
                async for chunk in stream:
                    first = first or time.monotonic()
                    text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
                return text, first, time.monotonic()

            return await asyncio.gather(*(one(i) for i in range(10)))

    results = asyncio.run(main())
    assert [text for text, _, _ in results] == [f"{CHEAP} heard: question {i}" for i in range(10)]
    # held at once, not one after the other: every stream had begun before the first one ended
    assert max(first for _, first, _ in results) < min(end for _, _, end in results)
    settled()
    assert Decision.objects.filter(call_status="ok").count() == 10


# --- budgets ------------------------------------------------------------------------------------------


def test_concurrent_streams_never_take_spend_past_the_budget_beyond_the_documented_bound(
    gateway, gateway_llms, upstream, make_tenant, settings
):
    """100 concurrent streams, each setting max_tokens, against a budget that fits about 25 of them.

    Every admitted call reserved its prompt (as routerhub counts it) plus max_tokens of output, so the
    overshoot is at most the sum over admitted calls of (actual − reservation): nothing, since metering
    charges no call more than it reserved.
    """
    settings.ROUTERHUB_GATEWAY_THREADS = 8
    upstream.answer = lambda model, text: " ".join(f"w{i}" for i in range(30))
    upstream.set_behaviour(CHEAP, chunk_delay_seconds=0.01)
    max_tokens = 40
    messages = [{"role": "user", "content": "Say thirty words, please."}]
    probe, probe_key = make_tenant(name="probe")
    reservation = ApiClient(probe_key).post(ROUTE, {"messages": messages, "models": [CHEAP]}).json()
    per_call = price(CHEAP, reservation["input_tokens"], max_tokens)
    tenant, key = make_tenant(name="small", budget_usd=str((per_call * 25).quantize(Decimal("1e-6"))))

    async def main():
        async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=60) as client:

            async def one():
                try:
                    stream = await client.chat.completions.create(
                        model=CHEAP, messages=messages, stream=True, max_tokens=max_tokens
                    )
                    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                except openai.APIStatusError as exc:
                    return exc.status_code

            return await asyncio.gather(*(one() for _ in range(100)))

    results = asyncio.run(main())
    answered = [r for r in results if isinstance(r, str)]
    # About 25 fit at once; a call admitted after others ended may use what their metering gave back
    # (they cost less than max_tokens' estimate), so more than 25 can be answered — never more spend.
    assert len(answered) + results.count(402) == 100 and len(answered) >= 20
    settled()
    period = BudgetPeriod.objects.get(tenant=tenant)
    decisions = Decision.objects.filter(tenant=tenant)
    assert decisions.count() == len(answered) and not decisions.exclude(call_status="ok").exists()
    actual = decisions.aggregate(total=Sum("actual_cost_usd"))["total"]
    assert period.spent_usd + period.overage_usd == actual  # metered exactly: usage × prices, summed
    assert period.spent_usd <= period.limit_usd
    overshoot = actual - period.limit_usd
    bound = sum(max(Decimal(0), d.actual_cost_usd - d.estimated_cost_usd) for d in decisions)
    assert overshoot <= bound
    assert reservation["input_tokens"] == openai_prompt_tokens(messages)  # the chat framing as OpenAI counts it
    assert bound == 0


def test_a_spent_budget_is_a_402_in_openai_shape(gateway, gateway_llms, make_tenant):
    _, key = make_tenant(name="broke", budget_usd="0")
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": CHEAP, "messages": QUESTION},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 402 and int(response.headers["retry-after"]) > 0
    error = response.json()["error"]
    assert error["code"] == "budget_exhausted" and "budget of tenant 'broke' is spent" in error["message"]


def test_gateway_spend_cannot_be_changed_by_feedback(gateway, gateway_llms, openai_client, tenant_and_key):
    _, key = tenant_and_key
    raw = openai_client.chat.completions.with_raw_response.create(model=CHEAP, messages=QUESTION)
    decision_id = raw.headers["x-routerhub-decision-id"]
    api = ApiClient(key)
    refused = api.post(f"{ROUTE}/{decision_id}/feedback", {"actual_cost_usd": 0})
    assert refused.status_code == 400 and "actual_cost_usd" in refused.json()["error"]["fields"]
    assert api.post(f"{ROUTE}/{decision_id}/feedback", {"quality_score": 1}).status_code == 200
    settled()
    decision = Decision.objects.get(id=decision_id)
    assert decision.actual_cost_usd == Decimal(raw.headers["x-routerhub-cost-usd"]) and decision.quality_score == 1


# --- text logging ---------------------------------------------------------------------------------------


def test_text_is_logged_only_for_tenants_that_turn_it_on(gateway, gateway_llms, openai_client, tenant_and_key):
    tenant, _ = tenant_and_key
    openai_client.chat.completions.create(model=CHEAP, messages=QUESTION)
    settled()
    assert not GatewayExchange.objects.exists()
    tenant = Tenant.objects.get(id=tenant.id)
    tenant.log_gateway_text = True
    tenant.save()  # as the admin saves it: the gateway's cached tenant is forgotten at once
    completion = openai_client.chat.completions.create(model=CHEAP, messages=QUESTION)
    settled()
    exchange = GatewayExchange.objects.get()
    assert exchange.request["messages"] == QUESTION and exchange.response_text == completion.choices[0].message.content
    assert Decision.objects.filter(input_tokens__isnull=False).count() == 2  # tokens and cost always kept


# --- bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, status, param, text",
    [
        ({"model": "routerhub-auto"}, 400, "messages", "'messages' is required"),
        ({"model": "routerhub-auto", "messages": "hello"}, 400, "messages", "non-empty array"),
        ({"model": "routerhub-auto", "messages": [{"role": "user", "content": 42}]}, 400, "messages[0].content", ""),
        ({"model": "routerhub-auto", "messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0].role", ""),
        ({"model": 7, "messages": QUESTION}, 400, "model", "'model' is required"),
        ({"model": CHEAP, "messages": QUESTION, "max_tokens": "many"}, 400, "max_tokens", ""),
        ({"model": CHEAP, "messages": QUESTION, "stream": "yes"}, 400, "stream", ""),
        ({"model": "routerhub-auto", "messages": QUESTION, "routerhub": {"lambda": "0"}}, 400, "routerhub.lambda", ""),
        ({"model": "routerhub-auto", "messages": QUESTION, "routerhub": {"lamda": 1}}, 400, "routerhub.lamda", ""),
        (
            {"model": "routerhub-auto", "messages": QUESTION, "routerhub": {"models": ["nope"]}},
            400,
            "routerhub.models",
            "Unknown LLM",
        ),
        ({"model": CHEAP, "messages": QUESTION, "routerhub": {"lambda": 1}}, 400, "routerhub", "names its LLM"),
        ({"model": "no-such-llm", "messages": QUESTION}, 404, "model", "does not exist"),
        ({"model": "routerhub-auto", "messages": [{"role": "system", "content": "Be brief."}]}, 400, "messages", ""),
    ],
)
def test_bad_input_gets_an_openai_error_naming_the_field(
    gateway, gateway_llms, tenant_and_key, body, status, param, text
):
    response = httpx.post(
        gateway.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {tenant_and_key[1]}"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param and text in error["message"]
    settled()
    assert not Decision.objects.exists()


def test_bad_keys_bodies_and_sizes_get_openai_errors(gateway, gateway_llms, tenant_and_key, settings):
    url = gateway.url + "/v1/chat/completions"
    headers = {"Authorization": f"Bearer {tenant_and_key[1]}"}
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.url + "/v1", api_key="rh_wrong", max_retries=0).chat.completions.create(
            model=CHEAP, messages=QUESTION
        )
    assert httpx.post(url, json={"model": CHEAP, "messages": QUESTION}).status_code == 401
    not_json = httpx.post(url, content=b"{not json", headers=headers)
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    deep = httpx.post(url, content=b"[" * 100000 + b"]" * 100000, headers=headers)
    assert deep.status_code == 400 and deep.json()["error"]["type"] == "invalid_request_error"
    settings.ROUTERHUB_GATEWAY_MAX_BODY_BYTES = 10_000
    huge = httpx.post(
        url, json={"model": CHEAP, "messages": [{"role": "user", "content": "x" * 20_000}]}, headers=headers
    )
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    settings.ROUTERHUB_GATEWAY_MAX_BODY_BYTES = 10_000_000
    settings.ROUTERHUB_MAX_PROMPT_CHARS = 1000
    long = httpx.post(
        url, json={"model": CHEAP, "messages": [{"role": "user", "content": "x" * 2000}]}, headers=headers
    )
    assert long.status_code == 400 and long.json()["error"]["code"] == "context_length_exceeded"
    assert httpx.get(url, headers=headers).status_code == 405
    assert httpx.get(gateway.url + "/v1/embeddings", headers=headers).json()["error"]["code"] == "unknown_url"
    settled()
    assert not Decision.objects.exists()


# --- upstream addresses and credentials ---------------------------------------------------------------


def test_an_llm_pointing_at_an_unlisted_private_address_is_never_called(
    gateway, gateway_llms, upstream, openai_client, settings
):
    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = ["10.0.0.0/8"]  # not the fake's loopback
    with pytest.raises(openai.APIStatusError) as failure:
        openai_client.chat.completions.create(model=CHEAP, messages=QUESTION)
    assert failure.value.status_code == 502 and upstream.calls == []
    settled()
    attempt = Decision.objects.get().attempts[0]
    assert attempt["outcome"] == "refused" and attempt["error"] == "its endpoint's address may not be called"
    assert "ROUTERHUB_UPSTREAM_ALLOWED_HOSTS" in attempt["detail"]  # for staff


def test_the_llms_key_is_sent_upstream_and_never_stored_or_returned(
    gateway, gateway_llms, upstream, openai_client, tenant_and_key, monkeypatch
):
    from registry.services import llm_update

    _, key = tenant_and_key
    llm_update(llm=LLM.objects.get(name=CHEAP), api_key="sk-upstream-secret-123")
    echoed = json.dumps({"error": {"message": "bad request from sk-upstream-secret-123"}})
    openai_client.chat.completions.create(model=CHEAP, messages=QUESTION)
    assert upstream.calls[-1].headers["authorization"] == "Bearer sk-upstream-secret-123"
    upstream.set_behaviour(CHEAP, status=500, error_body=echoed)
    with pytest.raises(openai.APIStatusError):
        openai_client.chat.completions.create(model=CHEAP, messages=QUESTION)
    settled()
    failed = Decision.objects.get(call_status="failed")
    assert "sk-upstream-secret-123" not in json.dumps(failed.attempts) and "[redacted]" in failed.attempts[0]["detail"]
    assert "sk-upstream-secret-123" not in decision_json(gateway, key, str(failed.id)).__repr__()
    assert "sk-upstream-secret-123" not in LLM.objects.filter(name=CHEAP).values_list("api_key_encrypted", flat=True)[0]
    # an endpoint that echoes the key hands it neither to the client nor to the text log
    tenant = Tenant.objects.get(id=tenant_and_key[0].id)
    tenant.log_gateway_text = True
    tenant.save()  # as the admin does (a bulk update would reach the gateway's cached tenant within seconds)
    upstream.set_behaviour(CHEAP, status=None, error_body=None)
    upstream.answer = lambda model, text: "your key is sk-upstream-secret-123"
    answer = openai_client.chat.completions.create(model=CHEAP, messages=QUESTION).choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in openai_client.chat.completions.create(model=CHEAP, messages=QUESTION, stream=True)
        if c.choices
    )
    assert answer == streamed == "your key is [redacted]"
    assert [e.response_text for e in GatewayExchange.objects.all()] == ["your key is [redacted]"] * 2
    upstream.set_behaviour(CHEAP, status=400, error_body=echoed)
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client.chat.completions.create(model=CHEAP, messages=QUESTION)
    assert "sk-upstream-secret-123" not in str(refused.value.body) and "[redacted]" in str(refused.value.body)
    monkeypatch.setenv("ROUTERHUB_LLM_KEY_FLASH", "sk-from-the-environment")
    llm_update(llm=LLM.objects.get(name=CHEAP), api_key=None, api_key_env="ROUTERHUB_LLM_KEY_FLASH")
    upstream.set_behaviour(CHEAP, status=None, error_body=None)
    openai_client.chat.completions.create(model=CHEAP, messages=QUESTION)
    assert upstream.calls[-1].headers["authorization"] == "Bearer sk-from-the-environment"


def test_many_concurrent_calls_all_answer(gateway, gateway_llms, upstream, tenant_and_key):
    """Reservations (budget row, then a new decision) and finishes (a decision, then the budget row) run
    side by side without deadlocking: every call answers."""
    tenant, key = tenant_and_key

    async def main():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=60)) as client:

            async def one(i):
                response = await client.post(
                    gateway.url + "/v1/chat/completions",
                    json={"model": CHEAP, "messages": [{"role": "user", "content": f"q{i}"}]},
                    headers={"Authorization": f"Bearer {key}"},
                )
                return response.status_code

            return await asyncio.gather(*(one(i) for i in range(150)))

    assert asyncio.run(main()) == [200] * 150
    settled()
    assert Decision.objects.filter(tenant=tenant, call_status="ok").count() == 150
    assert (
        BudgetPeriod.objects.get(tenant=tenant).spent_usd == Decision.objects.aggregate(s=Sum("actual_cost_usd"))["s"]
    )


def test_routing_only_chooses_llms_the_gateway_can_call(gateway, gateway_llms, upstream, openai_client, tenant_and_key):
    _, key = tenant_and_key
    first, second = ranking(key, **{"lambda": 0})[:2]
    # known from imported outcomes only: no API (updated_at moves, as with any edit: routers reload
    # within a second; reset_all() makes it now)
    LLM.objects.filter(name=first).update(api_base="", updated_at=timezone.now())
    reset_all()
    completion = openai_client.chat.completions.create(
        model="routerhub-auto", messages=QUESTION, extra_body={"routerhub": {"lambda": 0}}
    )
    assert completion.model == second and [c.model for c in upstream.calls] == [second]
    assert first not in [a["name"] for a in Decision.objects.get().alternatives]
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(model=first, messages=QUESTION)


def test_rate_limits_of_the_api_apply_to_the_gateway(gateway, gateway_llms, openai_client, settings):
    settings.ROUTERHUB_THROTTLE_API_KEY = "3/min"
    for _ in range(3):
        openai_client.chat.completions.create(model=CHEAP, messages=QUESTION)
    with pytest.raises(openai.RateLimitError) as limited:
        openai_client.chat.completions.create(model=CHEAP, messages=QUESTION)
    assert limited.value.body["code"] == "rate_limit_exceeded"
    assert 0 < int(limited.value.response.headers["retry-after"]) <= 60
    settled()
    assert Decision.objects.count() == 3  # refused before anything was reserved
    settings.ROUTERHUB_THROTTLE_FAILED_AUTH = "2/min"
    stranger = openai.OpenAI(base_url=gateway.url + "/v1", api_key="rh_not-a-key", max_retries=0)
    for _ in range(2):
        with pytest.raises(openai.AuthenticationError):
            stranger.chat.completions.create(model=CHEAP, messages=QUESTION)
    with pytest.raises(openai.RateLimitError):
        stranger.chat.completions.create(model=CHEAP, messages=QUESTION)


def test_a_revoked_key_is_refused_at_once_here_and_within_the_cache_seconds_elsewhere(
    gateway, gateway_llms, openai_client, tenant_and_key, settings
):
    from routing.models import ApiKey
    from routing.services.tenancy import api_key_create, api_keys_revoke

    settings.ROUTERHUB_GATEWAY_CACHE_SECONDS = 1
    tenant, _ = tenant_and_key
    openai_client.chat.completions.create(model=CHEAP, messages=QUESTION, max_tokens=5)  # the key is now cached
    api_keys_revoke(keys=ApiKey.objects.filter(tenant=tenant))  # the admin's action, in the server's process
    with pytest.raises(openai.AuthenticationError):
        openai_client.chat.completions.create(model=CHEAP, messages=QUESTION, max_tokens=5)

    other = api_key_create(tenant=tenant).secret
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=other, max_retries=0) as client:
        client.chat.completions.create(model=CHEAP, messages=QUESTION, max_tokens=5)
        # Revoked by another process: no signal reaches this one, its cached key expires instead.
        ApiKey.objects.filter(tenant=tenant).update(revoked_at=timezone.now())
        time.sleep(1.1)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model=CHEAP, messages=QUESTION, max_tokens=5)
