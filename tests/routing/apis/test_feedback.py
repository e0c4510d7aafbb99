"""Feedback a tenant could abuse: refunds below the prompt's cost, silent score rewrites, huge numbers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from registry.models import LLM, Outcome
from routing.models import BudgetPeriod, Decision
from routing.services.feedback import prompt_floor_usd
from tests.fixtures.api import ROUTE, ApiClient, sample_prompts

pytestmark = pytest.mark.django_db


def feedback(client, decision_id, **fields):
    return client.post(f"{ROUTE}/{decision_id}/feedback", fields)


def spent(tenant) -> Decimal:
    return BudgetPeriod.objects.get(tenant=tenant).spent_usd


def prompt_cost(body) -> Decimal:
    """What the answer's prompt tokens cost at the chosen LLM's input price."""
    llm = LLM.objects.get(name=body["llm"]["name"])
    return Decimal(str(llm.usd_per_mtok_in)) * body["input_tokens"] / Decimal(10**6)


@pytest.mark.parametrize(
    "report", [{"actual_cost_usd": 0}, {"input_tokens": 0, "output_tokens": 0}], ids=["zero cost", "zero tokens"]
)
def test_reporting_nothing_spent_after_each_route_does_not_make_routing_free(make_tenant, fitted, report):
    tenant, key = make_tenant(budget_usd="10")
    client = ApiClient(key)
    floors, estimates = [], []
    for prompt in sample_prompts(10):
        body = client.route(prompt, **{"lambda": 0}).json()
        after = feedback(client, body["decision_id"], **report).json()
        floor = prompt_cost(body)
        # (amounts are rounded up to the budget's 1e-10 USD)
        assert floor > 0 and after["counted_usd"] == pytest.approx(float(floor), abs=2e-10)
        assert after["feedback"]["reported_cost_usd"] == 0
        assert f"below what the {body['input_tokens']} prompt tokens routerhub counted cost" in after["notes"][0]
        floors.append(floor)
        estimates.append(Decimal(str(body["estimated_cost_usd"])))
    assert spent(tenant) == pytest.approx(sum(floors), abs=Decimal("2e-9"))
    assert 0 < spent(tenant) < sum(estimates)  # lowered towards the prompts' cost, never to nothing


def test_reported_cost_may_raise_spend_and_lower_it_down_to_the_prompts_cost(make_tenant, fitted):
    tenant, key = make_tenant(budget_usd="10")
    client = ApiClient(key)
    body = client.route(**{"lambda": 0}).json()
    estimate = body["estimated_cost_usd"]
    raised = feedback(client, body["decision_id"], actual_cost_usd=estimate * 3).json()
    assert raised["counted_usd"] == pytest.approx(estimate * 3) and raised["notes"] == []
    floor = float(prompt_cost(body))
    between = (floor + estimate) / 2
    lowered = feedback(client, body["decision_id"], actual_cost_usd=between).json()
    assert lowered["counted_usd"] == pytest.approx(between) and lowered["notes"] == []
    assert float(spent(tenant)) == pytest.approx(between)


def test_usage_shows_estimated_reported_and_recorded_spend(make_tenant, fitted):
    _, key = make_tenant(budget_usd="10")
    client = ApiClient(key)
    bodies = [client.route(prompt, **{"lambda": 0}).json() for prompt in sample_prompts(3)]
    feedback(client, bodies[0]["decision_id"], actual_cost_usd=0)  # raised to its prompt's cost
    feedback(client, bodies[1]["decision_id"], actual_cost_usd=bodies[1]["estimated_cost_usd"] * 2)
    totals = client.get("/api/v1/usage").json()["totals"]
    estimated = sum(b["estimated_cost_usd"] for b in bodies)
    reported = bodies[1]["estimated_cost_usd"] * 2
    recorded = float(prompt_cost(bodies[0])) + reported + bodies[2]["estimated_cost_usd"]
    assert totals["estimated_usd"] == pytest.approx(estimated)
    assert totals["reported_usd"] == pytest.approx(reported) and totals["with_reported_cost"] == 2
    assert totals["recorded_usd"] == pytest.approx(recorded) == totals["spent_usd"]


def test_a_changed_quality_score_keeps_the_history(api, fitted):
    body = api.route("Name the capital of Australia.").json()
    first = feedback(api, body["decision_id"], quality_score=1.0).json()
    assert first["notes"] == [] and len(first["feedback"]["history"]) == 1
    second = feedback(api, body["decision_id"], quality_score=0.0, latency_ms=900).json()
    assert second["notes"] == ["quality_score changed from 1 to 0; every score reported is kept in feedback.history."]
    history = api.get(f"{ROUTE}/{body['decision_id']}").json()["feedback"]["history"]
    assert [(h["quality_score"], h["latency_ms"]) for h in history] == [(1.0, None), (0.0, 900.0)]
    assert history[0]["received_at"] <= history[1]["received_at"]
    # sending the same feedback again adds nothing
    feedback(api, body["decision_id"], quality_score=0.0, latency_ms=900)
    assert len(api.get(f"{ROUTE}/{body['decision_id']}").json()["feedback"]["history"]) == 2


def test_one_tenants_score_does_not_replace_anothers(make_tenant, fitted):
    prompt = "Name the capital of Australia."
    scores = {}
    for name, score in (("alpha", 1.0), ("beta", 0.0)):
        _, key = make_tenant(name=name)
        client = ApiClient(key)
        body = client.route(prompt, models=["gemini-1.5-flash-002"]).json()
        assert feedback(client, body["decision_id"], quality_score=score).status_code == 200
        scores[name] = Decision.objects.get(id=body["decision_id"]).quality_score
    outcome = Outcome.objects.get(source=Outcome.Source.FEEDBACK)
    assert outcome.score == pytest.approx(0.5)  # one vote each, not the last one alone
    assert scores == {"alpha": 1.0, "beta": 0.0}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"actual_cost_usd": 1e30}', "actual_cost_usd"),
        ('{"actual_cost_usd": 1e999}', "actual_cost_usd"),
        ('{"actual_cost_usd": 123456.5}', "actual_cost_usd"),
        ('{"input_tokens": 1000000000000}', "input_tokens"),
        ('{"output_tokens": 1e15}', "output_tokens"),
        ('{"latency_ms": 1e300}', "latency_ms"),
        ('{"latency_ms": -1e999}', "latency_ms"),
        ('{"quality_score": NaN}', None),
        ('{"actual_cost_usd": Infinity}', None),
    ],
)
def test_huge_or_non_finite_numbers_are_a_400_and_change_nothing(api, fitted, tenant_and_key, body, field):
    decision_id = api.route().json()["decision_id"]
    before = spent(tenant_and_key[0])
    response = api.post(f"{ROUTE}/{decision_id}/feedback", body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    if field is not None:
        assert field in error["fields"]
    assert spent(tenant_and_key[0]) == before and Decision.objects.get().feedback_at is None


def test_tokens_that_would_cost_more_than_any_call_are_a_400(api, fitted, settings):
    settings.ROUTERHUB_FEEDBACK_MAX_COST_USD = 100
    body = api.route(models=["jamba-1.5-large"]).json()
    assert feedback(api, body["decision_id"], output_tokens=10_000_000).status_code == 200  # 80 USD
    response = feedback(api, body["decision_id"], output_tokens=20_000_000)
    assert response.status_code == 400
    assert "output_tokens" in response.json()["error"]["fields"]
    assert "would cost" in response.json()["error"]["message"]


def test_the_floor_is_the_per_query_price_for_an_llm_priced_per_query(api, fitted):
    llm = LLM.objects.get(name="gemini-1.5-flash-002")
    llm.usd_per_query = 0.002
    llm.save()
    body = api.route(models=[llm.name]).json()
    after = feedback(api, body["decision_id"], actual_cost_usd=0).json()
    assert after["counted_usd"] == pytest.approx(0.002)
    assert prompt_floor_usd(Decision.objects.get()) == Decimal("0.002")
