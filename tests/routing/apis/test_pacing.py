"""Budget pacing through the route API, on a simulated clock: no overreaction to bursts, a steady
over-budget rate paced to end within the budget, the request's own candidates, notes in words."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pytest

from routing.models import BudgetPeriod
from routing.selection import MAX_LAMBDA, mean_cost
from routing.selectors.routers import reference_sample, router_for
from tests.fixtures.api import ApiClient, sample_prompts

pytestmark = pytest.mark.django_db


def unpaced_costs(make_tenant, prompts: list[str]) -> dict[str, float]:
    """What each prompt costs when routed with λ = 0 (by a tenant of its own, with a budget to spare)."""
    _, key = make_tenant(name="probe", budget_usd="1000000")
    probe = ApiClient(key)
    return {prompt: probe.route(prompt, **{"lambda": 0}).json()["estimated_cost_usd"] for prompt in set(prompts)}


def unpaced_tokens(prompts: list[str]) -> dict[str, int]:
    """Each prompt's counted tokens, as the probe's decisions recorded them."""
    from routing.models import Decision

    return dict(Decision.objects.filter(tenant__name="probe").values_list("routed_text", "prompt_tokens"))


def period_of(tenant) -> BudgetPeriod:
    return BudgetPeriod.objects.get(tenant=tenant, period=tenant.budget_period)


def test_a_500_request_burst_at_a_fifth_of_a_percent_spent_leaves_lambda_at_its_default(make_tenant, fitted, clock):
    # The demo's case: test bursts early in a month on a 10 USD budget must not move routing to
    # cheap, weak LLMs. The budget is set so that the whole burst, routed unpaced, spends 0.2 % of it.
    prompts = [sample_prompts(50)[i % 50] for i in range(500)]
    costs = unpaced_costs(make_tenant, prompts)
    burst_cost = sum(costs[p] for p in prompts)
    tenant, key = make_tenant(name="demo", budget_usd=f"{burst_cost / 0.002:.6f}")
    client = ApiClient(key)
    answers = []
    for prompt in prompts:
        answers.append(client.route(prompt).json())
        clock.advance(0.1)  # 500 requests in 50 seconds
    assert {(a["lambda_used"], a["lambda_reason"]) for a in answers} == {(0.0, "budget_pacing")}
    assert all(a["notes"] == [] for a in answers)
    assert [a["estimated_cost_usd"] for a in answers] == [costs[p] for p in prompts]  # routed as unpaced
    period = period_of(tenant)
    assert float(period.spent_usd / period.limit_usd) == pytest.approx(0.002, rel=1e-3)


def test_a_steady_over_budget_rate_is_paced_to_end_within_the_budget(make_tenant, fitted, clock):
    # One request every 3 minutes for a whole (simulated) day, whose unpaced cost is 1.5 times the
    # daily budget: pacing, not the hard limit, must make the budget last the day.
    clock.set(datetime(2031, 3, 10, 0, 0, tzinfo=UTC))
    interval, n = 180, 480
    prompts = [sample_prompts(50)[i % 50] for i in range(n)]
    costs = unpaced_costs(make_tenant, prompts)
    budget = sum(costs[p] for p in prompts) / 1.5
    # and it can: routing every request to its cheapest LLM would fit the budget
    router = router_for(strategy=None)
    cheapest = {p: router.expected_costs(input_tokens=t).min() for p, t in unpaced_tokens(prompts).items()}
    assert sum(cheapest[p] for p in prompts) < budget
    tenant, key = make_tenant(name="steady", budget_usd=f"{budget:.6f}", budget_period="day")
    client = ApiClient(key)
    answers, elapsed, refused_at = [], [], []
    for prompt in prompts:
        share_of_day = (clock.now - datetime(2031, 3, 10, tzinfo=UTC)).total_seconds() / 86400
        response = client.route(prompt)
        if response.status_code == 402:
            refused_at.append(share_of_day)
        else:
            assert response.status_code == 200, response.content
            answers.append(response.json())
            elapsed.append(share_of_day)
        clock.advance(interval)
    spent = np.array([a["budget"]["spent_usd"] for a in answers]) / budget
    lambdas = np.array([a["lambda_used"] for a in answers])
    period = period_of(tenant)
    assert period.spent_usd <= period.limit_usd and spent[-1] >= 0.9, "within the budget, and using it"
    # The hard limit refuses a request only when what is left is less than one request to the
    # cheapest LLM: in the last minutes of the day, never before.
    assert all(at >= 0.99 for at in refused_at), refused_at
    assert all(a["lambda_reason"] == "budget_pacing" for a in answers)  # never "budget_exhausted"
    # λ stays 0 while spend is on track, and rises only once it runs ahead of the period
    first_paced = int(np.argmax(lambdas > 0))
    assert first_paced > 0 and (lambdas[:first_paced] == 0).all()
    assert spent[first_paced - 1] > elapsed[first_paced - 1]
    # Spend follows the day. Full pressure (one margin past the allowance, i.e. two margins ahead of
    # the period) splits what is left evenly, which holds spend at that distance; the reference
    # sample's costs differ a little from the traffic's, so allow a third margin, plus one request.
    # In the last hour what is left per request falls below what the cheapest LLMs cost, and pacing
    # can do no more than route to them.
    largest = max(costs.values()) / budget
    elapsed = np.array(elapsed)
    ahead = spent - (elapsed + 3 * 0.05 * (1 - elapsed) + largest)
    before_the_last_hour = elapsed < 23 / 24
    assert (ahead[before_the_last_hour] <= 0).all(), [(e, s) for e, s, a in zip(elapsed, spent, ahead) if a > 0]
    assert lambdas.max() < MAX_LAMBDA
    for answer in answers:
        if answer["lambda_used"] > 0:
            assert "Budget pacing raised λ" in answer["notes"][0], answer["notes"]


def off_track(tenant, clock, *, spent_share: float, requests_per_hour: float) -> None:
    """Put the tenant's open period where a tenant who spent ``spent_share`` of its budget by now, at
    ``requests_per_hour``, would be (written straight to the row: reaching it through the API would
    take hours of simulated traffic)."""
    period = period_of(tenant)
    BudgetPeriod.objects.filter(id=period.id).update(
        spent_usd=period.limit_usd * Decimal(str(spent_share)),
        request_rate=requests_per_hour / 3600 * (1 - np.exp(-6)),  # as smoothed over 6 h at a steady rate
        spend_rate=0.0,
        rates_at=clock.now,
    )


def test_pacing_solves_over_the_requests_own_models_and_cost_cap(make_tenant, fitted, clock):
    clock.set(datetime(2031, 3, 10, 6, 0, tzinfo=UTC))  # a quarter of the day gone
    tenant, key = make_tenant(name="capped", budget_usd="1", budget_period="day")
    client = ApiClient(key)
    assert client.route().json()["lambda_used"] == 0.0  # on track: opens the period
    # 60 % spent after a quarter of the day, at a rate that leaves each request less than the unpaced
    # cost but more than cheaper LLMs cost (halfway between the unpaced mean and the dearest LLM at
    # least 5 % below it)
    router = router_for(strategy=None)
    reference = reference_sample(router)
    unpaced_mean = mean_cost(reference.losses, reference.mean_costs, 0.0)
    below = np.sort(reference.mean_costs[reference.mean_costs < 0.95 * unpaced_mean])
    assert len(below) >= 2
    even = (unpaced_mean + below[-1]) / 2
    clock.advance(60)
    off_track(tenant, clock, spent_share=0.6, requests_per_hour=0.4 / (even * 18))
    unpaced = client.route().json()
    assert unpaced["lambda_used"] > 0
    note = unpaced["notes"][0]
    assert "Budget pacing raised λ" in note and "60.0% of the daily budget (0.6 of 1 USD)" in note
    assert "requests/hour" in note and "would end at" in note and "17 h" in note and "left" in note
    # the same request limited to LLMs that already fit the pace needs no cost weight
    costs = router.expected_costs(input_tokens=unpaced["input_tokens"])
    fitting = [c for c in np.sort(costs) if reference.mean_costs[costs <= c].max() < even]
    assert len(fitting) >= 2, "the cheapest LLMs should fit the pace"
    cap = float(fitting[-1])
    capped = client.route(max_cost_usd=cap).json()
    assert capped["lambda_used"] == 0.0 and capped["estimated_cost_usd"] <= cap
    assert "already cost" in capped["notes"][0] and "so λ stays 0" in capped["notes"][0]
    cheap = [llm.name for llm, cost in zip(router.llms, costs) if cost <= cap]
    by_models = client.route(models=cheap).json()
    assert by_models["lambda_used"] == 0.0 and by_models["llm"]["name"] in cheap


def test_pacing_is_recomputed_at_most_every_few_seconds_per_tenant(make_tenant, fitted, monkeypatch):
    from routing.services import budget_policies
    from routing.services.budget_policies import SmoothedRatePacing

    monkeypatch.setattr(budget_policies, "PACING_REFRESH_SECONDS", 60)
    calls = []
    original = SmoothedRatePacing.lambda_for
    monkeypatch.setattr(SmoothedRatePacing, "lambda_for", lambda self, **kw: calls.append(1) or original(self, **kw))
    _, key = make_tenant()
    for prompt in sample_prompts(5):
        assert ApiClient(key).route(prompt).status_code == 200
    assert len(calls) == 1
    ApiClient(key).route(models=["gemini-1.5-flash-002", "Phi-3-mini-4k-instruct"])  # other candidates: solved anew
    assert len(calls) == 2
