"""What the gateway admits, against a live ASGI server and the fake upstream: bodies it cannot store or pass
on are refused before anything is called or written, the reservation covers everything the call can bill,
and fields billed beyond token prices go only to LLMs that accept and price them."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from registry.models import LLM
from registry.services import llm_update
from registry.tokens import count_tokens
from routing.caches import reset_all
from routing.models import BudgetPeriod, Decision, Tenant
from routing.prompt_text import MEDIA_PART_TOKENS
from tests.fixtures.gateway import CHEAP, QUESTION, price, settled, usd

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def post(gateway, key: str, body) -> httpx.Response:
    """``body`` as JSON text with \\u escapes (a lone surrogate survives them, not UTF-8), or as given."""
    content = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return httpx.post(
        gateway.url + "/v1/chat/completions",
        content=content,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=30,
    )


def refused(response: httpx.Response, param: str, code: str | None = None) -> dict:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert code is None or error["code"] == code, error
    return error


def nothing_called_or_recorded(upstream, tenant) -> None:
    assert upstream.calls == []
    settled()
    assert not Decision.objects.filter(tenant=tenant).exists()
    period = BudgetPeriod.objects.filter(tenant=tenant).first()
    assert period is None or (period.requests, period.spent_usd, period.leased_usd) == (0, 0, 0)


# --- bodies the service cannot store or pass on ---------------------------------------------------------


def everywhere(bad: str) -> list[tuple[str, dict]]:
    """(where, body): ``bad`` in each kind of string position an OpenAI chat body has."""
    tool = {"type": "function", "function": {"name": "lookup", "description": "Look it up", "parameters": {}}}
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    chat = [
        {"role": "user", "content": "Look up x."},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "x is 4"},
    ]

    def body(**fields):
        return {"model": CHEAP, "messages": QUESTION, **fields}

    return [
        ("model", {"model": CHEAP + bad, "messages": QUESTION}),
        ("messages[0].content", body(messages=[{"role": "user", "content": f"hi{bad} tell me a long story"}])),
        (
            "messages[0].content[1].text",
            body(
                messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": bad}]}]
            ),
        ),
        (
            "messages[0].content[0].image_url.url",
            body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:{bad}"}}]}]),
        ),
        ("messages[0].name", body(messages=[{"role": "user", "content": "hi", "name": f"ann{bad}"}])),
        (
            "messages[1].tool_calls[0].function.arguments",
            body(messages=[chat[0], {**chat[1], "tool_calls": [{**call, "function": {"arguments": bad}}]}, chat[2]]),
        ),
        ("messages[2].tool_call_id", body(messages=[*chat[:2], {**chat[2], "tool_call_id": bad}])),
        ("tools[0].function.description", body(tools=[{**tool, "function": {**tool["function"], "description": bad}}])),
        (
            "tools[0].function.parameters.properties",
            body(tools=[{**tool, "function": {**tool["function"], "parameters": {"properties": {bad: {}}}}}]),
        ),
        (
            "response_format.json_schema.schema.description",
            body(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {"description": bad}}}),
        ),
        ("stop[1]", body(stop=["\n", bad])),
        ("user", body(user=bad)),
        ("metadata.note", body(metadata={"note": bad})),
        ("prediction.content", body(prediction={"type": "content", "content": bad})),
        ("routerhub.models[0]", {"model": "routerhub-auto", "messages": QUESTION, "routerhub": {"models": [bad]}}),
    ]


@pytest.mark.parametrize(("bad", "said"), [("\u0000", "NUL character"), ("\ud800", "lone surrogate (\\ud800)")])
def test_a_nul_or_lone_surrogate_anywhere_is_a_400_naming_it_before_any_call_or_record(
    gateway, gateway_llms, upstream, tenant_and_key, bad, said
):
    tenant, key = tenant_and_key
    for where, body in everywhere(bad):
        error = refused(post(gateway, key, body), where)
        assert said in error["message"] and where in error["message"]
    nothing_called_or_recorded(upstream, tenant)
    # a surrogate pair is one ordinary character: answered
    smile = post(gateway, key, {"model": CHEAP, "messages": [{"role": "user", "content": "hi \U0001f600"}]})
    assert smile.status_code == 200 and upstream.calls[-1].body["messages"][0]["content"] == "hi \U0001f600"


def test_more_messages_than_max_messages_is_a_400(gateway, gateway_llms, upstream, tenant_and_key, settings):
    tenant, key = tenant_and_key
    settings.ROUTERHUB_MAX_MESSAGES = 5
    chat = [{"role": "user", "content": f"turn {i}"} for i in range(6)]
    error = refused(post(gateway, key, {"model": CHEAP, "messages": chat}), "messages")
    assert "has 6 items; at most 5" in error["message"]
    nothing_called_or_recorded(upstream, tenant)
    assert post(gateway, key, {"model": CHEAP, "messages": chat[:5]}).status_code == 200


@pytest.mark.parametrize(
    ("fragment", "param", "said"),
    [
        ('"max_tokens": 10000000000000000', "max_tokens", "from 1 to 1,000,000"),
        ('"max_completion_tokens": 1000001', "max_completion_tokens", "from 1 to 1,000,000"),
        ('"max_tokens": 0', "max_tokens", "from 1 to 1,000,000"),
        ('"n": 1000', "n", "from 1 to 128"),
        ('"temperature": 1e999', "temperature", "not a finite number"),
        ('"seed": 100000000000000000000', "seed", "integer beyond"),
        ('"logit_bias": {"50256": -1e999}', "logit_bias.50256", "not a finite number"),
    ],
)
def test_numbers_out_of_range_are_a_400_naming_the_field(
    gateway, gateway_llms, upstream, tenant_and_key, fragment, param, said
):
    tenant, key = tenant_and_key
    body = '{"model": "' + CHEAP + '", "messages": ' + json.dumps(QUESTION) + ", " + fragment + "}"
    assert said in refused(post(gateway, key, body), param)["message"]
    nothing_called_or_recorded(upstream, tenant)


# --- the reservation covers everything the call can bill ------------------------------------------------


def test_tools_schemas_tool_calls_and_media_parts_are_reserved_for(
    gateway, gateway_llms, upstream, tenant_and_key, monkeypatch
):
    _, key = tenant_and_key
    monkeypatch.setitem(MEDIA_PART_TOKENS, "image", 3000)
    description = "Find the population of a city in a given year, from the census tables of its country. " * 15
    schema_text = "The answer as a number, with the census year it comes from and the table that was used. " * 5
    arguments = json.dumps({"city": "Lyon", "year": 1990, "note": "metropolitan area, not the commune " * 3})
    body = {
        "model": CHEAP,
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Population of Lyon?"}, *[image()] * 2]},
            {"role": "assistant", "content": None, "tool_calls": [tool_call(arguments)]},
            {"role": "tool", "tool_call_id": "call_1", "content": "513,275"},
        ],
        "tools": [{"type": "function", "function": {"name": "census", "description": description, "parameters": {}}}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object", "description": schema_text}},
        },
    }
    response = post(gateway, key, body)
    assert response.status_code == 200, response.text
    assert upstream.calls[-1].body["tools"] == body["tools"]  # all of it went upstream …
    settled()
    decision = Decision.objects.get(id=response.headers["x-routerhub-decision-id"])
    counted = count_tokens([description])[0] + count_tokens([schema_text])[0] + count_tokens([arguments])[0]
    counted += count_tokens(["Population of Lyon?"])[0] + count_tokens(["513,275"])[0] + 2 * 3000  # two images
    # … and all of it was reserved for: the texts, 3000 tokens per image, a few tokens of keys and framing
    assert counted <= decision.prompt_tokens <= counted + 100
    assert decision.estimated_cost_usd == price(CHEAP, decision.prompt_tokens, 10)
    shown = httpx.get(
        f"{gateway.url}/api/v1/route/{decision.id}", headers={"Authorization": f"Bearer {key}"}
    ).json()  # what the tenant sees
    assert shown["input_tokens"] == decision.prompt_tokens
    assert Decimal(str(shown["estimated_cost_usd"])) == decision.estimated_cost_usd


def image() -> dict:
    return {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "iVBORw0KGgo" * 3000}}


def tool_call(arguments: str) -> dict:
    return {"id": "call_1", "type": "function", "function": {"name": "census", "arguments": arguments}}


def test_a_budget_that_holds_a_text_call_refuses_one_with_many_images(
    gateway, gateway_llms, upstream, make_tenant, monkeypatch
):
    monkeypatch.setitem(MEDIA_PART_TOKENS, "image", 2000)
    text_call = price(CHEAP, 100, 50)
    tenant, key = make_tenant(name="small", budget_usd=str((text_call * 3).quantize(Decimal("1e-6"))))
    plain = {"model": CHEAP, "messages": QUESTION, "max_tokens": 50}
    assert post(gateway, key, plain).status_code == 200
    pictures = {
        **plain,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Which?"}, *[image()] * 20]}],
    }
    response = post(gateway, key, pictures)
    assert response.status_code == 402, response.text  # 40,000 tokens of images: far more than is left
    assert response.json()["error"]["code"] == "budget_exhausted"
    assert len(upstream.calls) == 1
    settled()
    period = BudgetPeriod.objects.get(tenant=tenant)
    assert (period.requests, period.rejected_requests) == (1, 1) and period.spent_usd <= period.limit_usd


def test_max_tokens_is_sent_and_reserved_when_the_client_sets_none_times_n(
    gateway, gateway_llms, upstream, tenant_and_key, settings
):
    tenant, key = tenant_and_key
    settings.ROUTERHUB_GATEWAY_DEFAULT_MAX_TOKENS = 40
    upstream.answer = lambda model, text: " ".join(f"word{i}" for i in range(300))  # long, if nothing bounds it
    response = post(gateway, key, {"model": CHEAP, "messages": QUESTION, "n": 3})
    assert response.status_code == 200, response.text
    sent = upstream.calls[-1].body
    assert sent["max_tokens"] == 40 and sent["n"] == 3
    usage = response.json()["usage"]
    assert usage["completion_tokens"] <= 40  # the LLM stopped where the reservation did
    settled()
    decision = Decision.objects.get(id=response.headers["x-routerhub-decision-id"])
    assert decision.estimated_cost_usd == price(CHEAP, decision.prompt_tokens, 40 * 3)
    assert decision.request["max_tokens"] == 120
    assert decision.actual_cost_usd == price(CHEAP, usage["prompt_tokens"], usage["completion_tokens"])
    # A limit of the client's own is sent as it is, and the larger of two is what is reserved.
    limited = post(gateway, key, {"model": CHEAP, "messages": QUESTION, "max_tokens": 7, "max_completion_tokens": 9})
    assert (upstream.calls[-1].body["max_tokens"], upstream.calls[-1].body["max_completion_tokens"]) == (7, 9)
    settled()
    decision = Decision.objects.get(id=limited.headers["x-routerhub-decision-id"])
    assert decision.estimated_cost_usd == price(CHEAP, decision.prompt_tokens, 9)
    streamed = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": CHEAP, "messages": QUESTION, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert streamed.status_code == 200 and upstream.calls[-1].body["max_tokens"] == 40
    settled()
    assert BudgetPeriod.objects.get(tenant=tenant).spent_usd == sum(d.actual_cost_usd for d in Decision.objects.all())


# --- fields billed beyond token prices ------------------------------------------------------------------


BILLED_OTHERWISE = [
    ("service_tier", "priority"),
    ("modalities", ["text", "audio"]),
    ("audio", {"voice": "alloy", "format": "wav"}),
    ("web_search_options", {}),
    ("tools", [{"type": "web_search"}]),
    ("best_of", 4),  # a field routerhub does not know: it cannot tell what it bills
]


def test_fields_billed_beyond_token_prices_are_refused_unless_the_llm_accepts_them(
    gateway, gateway_llms, upstream, tenant_and_key
):
    tenant, key = tenant_and_key
    for name, value in BILLED_OTHERWISE:
        for model in (CHEAP, "routerhub-auto"):
            error = refused(post(gateway, key, {"model": model, "messages": QUESTION, name: value}), name)
            assert error["code"] == "unsupported_parameter" and f"`{name}`" in error["message"]
    nothing_called_or_recorded(upstream, tenant)
    for tier in ("auto", "default"):  # the LLM's own prices
        assert post(gateway, key, {"model": CHEAP, "messages": QUESTION, "service_tier": tier}).status_code == 200
        assert upstream.calls[-1].body["service_tier"] == tier


def test_an_accepted_field_is_passed_on_reserved_and_metered_at_its_prices(
    gateway, gateway_llms, upstream, tenant_and_key
):
    tenant, key = tenant_and_key
    prices = {"usd_per_mtok_in": 2.5, "usd_per_mtok_out": 10.0, "usd_per_call": 0.001}
    llm = LLM.objects.get(name=CHEAP)
    llm_update(llm=llm, metadata={**llm.metadata, "gateway_fields": {"service_tier": prices, "top_k": {}}})
    reset_all()
    body = {"model": CHEAP, "messages": QUESTION, "max_tokens": 30, "service_tier": "priority", "top_k": 5}
    response = post(gateway, key, body)
    assert response.status_code == 200, response.text
    assert (upstream.calls[-1].body["service_tier"], upstream.calls[-1].body["top_k"]) == ("priority", 5)
    usage = response.json()["usage"]
    cost = usd((2.5 * usage["prompt_tokens"] + 10.0 * usage["completion_tokens"]) / 1e6 + 0.001)
    assert Decimal(response.headers["x-routerhub-cost-usd"]) == cost
    settled()
    decision = Decision.objects.get(id=response.headers["x-routerhub-decision-id"])
    assert decision.estimated_cost_usd == usd((2.5 * decision.prompt_tokens + 10.0 * 30) / 1e6 + 0.001)
    assert decision.actual_cost_usd == cost == BudgetPeriod.objects.get(tenant=tenant).spent_usd
    refused(post(gateway, key, {**body, "web_search_options": {}}), "web_search_options")


def test_routing_goes_only_to_llms_that_accept_the_fields_a_call_sets(gateway, gateway_llms, upstream, tenant_and_key):
    _, key = tenant_and_key
    options = {"routerhub": {"lambda": 0}}
    first = post(gateway, key, {"model": "routerhub-auto", "messages": QUESTION, **options}).json()["model"]
    other = LLM.objects.exclude(name=first).order_by("name").first()
    llm_update(llm=other, metadata={**other.metadata, "gateway_fields": {"web_search_options": {"usd_per_call": 0.01}}})
    reset_all()
    body = {"model": "routerhub-auto", "messages": QUESTION, "web_search_options": {}, **options}
    response = post(gateway, key, body)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == other.name and upstream.calls[-1].body["web_search_options"] == {}
    settled()
    decision = Decision.objects.get(id=response.headers["x-routerhub-decision-id"])
    assert decision.alternatives == []  # no other LLM accepts the field: nothing to fall back to
    assert decision.actual_cost_usd >= Decimal("0.01")  # the fee per call is metered


# --- a spent budget ----------------------------------------------------------------------------------


def test_a_call_naming_its_llm_gets_402_when_the_budget_is_spent_whatever_the_policy(
    gateway, gateway_llms, upstream, make_tenant
):
    tenant, key = make_tenant(name="thrifty", budget_usd="0", when_budget_spent=Tenant.WhenSpent.CHEAPEST)
    named = post(gateway, key, {"model": CHEAP, "messages": QUESTION})
    assert named.status_code == 402, named.text
    assert named.json()["error"]["code"] == "budget_exhausted" and int(named.headers["retry-after"]) > 0
    assert upstream.calls == []
    routed = post(gateway, key, {"model": "routerhub-auto", "messages": QUESTION})  # the policy still routes
    assert routed.status_code == 200, routed.text
    settled()
    decision = Decision.objects.get(tenant=tenant)
    assert decision.lambda_reason == "budget_exhausted" and decision.overage_usd > 0
    assert BudgetPeriod.objects.get(tenant=tenant).rejected_requests == 1


def test_routing_weighs_the_expected_cost_while_the_bound_is_reserved(
    gateway, gateway_llms, upstream, tenant_and_key, settings
):
    """Without max_tokens a call reserves ROUTERHUB_GATEWAY_DEFAULT_MAX_TOKENS of output, but λ weighs
    what it is expected to cost, as /api/v1/route does: the same choice at every λ."""
    _, key = tenant_and_key
    settings.ROUTERHUB_GATEWAY_DEFAULT_MAX_TOKENS = 4096
    for lam in (30, 300, 3000, 30000, 300000):
        expected = ranking(lam)
        response = post(gateway, key, {"model": "routerhub-auto", "messages": QUESTION, "routerhub": {"lambda": lam}})
        assert response.status_code == 200 and response.json()["model"] == expected, lam
        settled()
        decision = Decision.objects.get(id=response.headers["x-routerhub-decision-id"])
        assert decision.estimated_cost_usd == price(expected, decision.prompt_tokens, 4096)


def ranking(lam: float) -> str:
    """The LLM /api/v1/route chooses for QUESTION at λ (for a tenant of its own, its decision deleted)."""
    from routing.services.tenancy import api_key_create, tenant_create
    from tests.fixtures.api import ROUTE, ApiClient

    tenant = Tenant.objects.filter(name="ranking").first() or tenant_create(name="ranking", budget_usd="100")
    answer = ApiClient(api_key_create(tenant=tenant).secret).post(ROUTE, {"messages": QUESTION, "lambda": lam}).json()
    Decision.objects.filter(id=answer["decision_id"]).delete()
    return answer["llm"]["name"]
