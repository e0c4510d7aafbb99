"""Exploration through the route API: opt-in per tenant, marked in the answer and the decision, and
never outside the request's candidates, its cost cap or the tenant's budget."""

from decimal import Decimal

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from registry.models import LLM, Outcome, Prompt
from registry.services import llm_register
from routing.caches import reset_all
from routing.models import BudgetPeriod, Decision, Tenant, TenantMembership
from routing.services import scoring
from routing.services.decisions import route_create
from routing.services.scoring import RouteRequest
from routing.services.state import llm_profile
from tests.fixtures.api import ApiClient, sample_prompts

pytestmark = pytest.mark.django_db

# Profiled on every validation prompt of the slice, and estimated better than the newcomer where it has answers.
KNOWN = ["Meta-Llama-3_1-8B-Instruct", "Qwen1.5-72B-Chat"]


def register_uncertain(prompt_set, name: str, **prices) -> LLM:
    """An LLM profiled on four validation prompts, two of them right: an estimate of 0.5 on little evidence."""
    validation = Prompt.objects.filter(prompt_set=prompt_set, split="validation").order_by("id")[:4]
    llm = llm_register(name=name, **prices)
    Outcome.objects.bulk_create(
        Outcome(llm=llm, prompt=p, score=float(i % 2), source="profiled") for i, p in enumerate(validation)
    )
    llm_profile(llm=llm)
    reset_all()
    return llm


@pytest.fixture
def seeded(monkeypatch):
    """One seeded generator for every request of the test: the draws are the same on every run."""
    rng = np.random.default_rng(2026)
    monkeypatch.setattr(scoring, "exploration_rng", lambda: rng)


@pytest.fixture
def newcomer(fitted):
    return register_uncertain(fitted.prompt_set, "newcomer", usd_per_query=0.0001)


def test_an_exploring_tenant_s_explored_choices_are_marked_and_a_tenant_with_share_zero_never_explores(
    make_tenant, newcomer, seeded, settings, django_user_model
):
    settings.ROUTERHUB_EXPLORATION_MAX_SHARE = 1.0
    _, exploring_key = make_tenant(name="explorer", exploration_share=1.0)
    _, plain_key = make_tenant(name="plain")
    explorer, plain = ApiClient(exploring_key), ApiClient(plain_key)
    candidates = {"models": ["newcomer", *KNOWN], "lambda": 0}
    explored_to = []
    for prompt in sample_prompts(40):
        answer = explorer.route(prompt, **candidates).json()
        best = plain.route(prompt, **candidates).json()
        assert best["explored"] is False and best["exploited"] is None
        if answer["explored"]:
            # what exploration replaced is what the estimates choose for the same prompt
            assert answer["exploited"] == {
                "name": best["llm"]["name"],
                "predicted_quality": pytest.approx(best["predicted_quality"], abs=1e-6),
                "estimated_cost_usd": best["estimated_cost_usd"],
            }
            assert answer["llm"]["name"] != best["llm"]["name"]
            assert (
                f"routed to {answer['llm']['name']}, whose estimate is less certain, instead of "
                f"{best['llm']['name']}, the best by the estimates." in answer["notes"][-1]
            )
            explored_to.append(answer["llm"]["name"])
        else:
            assert answer["exploited"] is None
            assert answer["llm"]["name"] == best["llm"]["name"]
        assert answer["llm"]["name"] in candidates["models"]
    assert explored_to.count("newcomer") >= 3  # the uncertain LLM is tried
    recorded = Decision.objects.filter(tenant__name="explorer", explored=True)
    assert sorted(recorded.values_list("llm__name", flat=True)) == sorted(explored_to)
    assert all(d.exploited["name"] != d.llm.name for d in recorded)
    assert not Decision.objects.filter(tenant__name="plain", explored=True).exists()
    # The decision shows it: to the tenant through the API, to staff on the dashboard.
    one = recorded.first()
    shown = explorer.get(f"/api/v1/route/{one.id}").json()
    assert shown["explored"] is True and shown["exploited"]["name"] == one.exploited["name"]
    staff = Client()
    staff.force_login(django_user_model.objects.create_superuser("root", password="pw-123456"))
    page = staff.get(f"/decisions/{one.id}/").content.decode()
    assert f"the tenant's exploration chose {one.llm.name}" in page
    assert f"instead of {one.exploited['name']}" in page


def test_an_exploring_tenant_stays_within_the_cost_cap_and_the_budget(make_tenant, fitted, seeded, settings):
    settings.ROUTERHUB_EXPLORATION_MAX_SHARE = 1.0
    register_uncertain(fitted.prompt_set, "newcomer", usd_per_query=0.0001)
    register_uncertain(fitted.prompt_set, "newcomer-pricey", usd_per_query=0.01)  # above the cap
    tenant, key = make_tenant(name="explorer", budget_usd="0.002", exploration_share=1.0)
    client = ApiClient(key)
    models = ["newcomer", "newcomer-pricey", *KNOWN]
    answers, refused = [], 0
    for prompt in sample_prompts(30):
        response = client.route(prompt, models=models, max_cost_usd=0.001, **{"lambda": 0})
        if response.status_code == 402:
            refused += 1
            assert response.json()["error"]["code"] == "budget_exhausted"
            continue
        answers.append(response.json())
    period = BudgetPeriod.objects.get(tenant=tenant)
    assert refused > 0 and len(answers) >= 5
    assert all(a["estimated_cost_usd"] <= 0.001 for a in answers)
    assert "newcomer-pricey" not in {a["llm"]["name"] for a in answers}
    assert any(a["explored"] for a in answers)
    assert period.spent_usd <= period.limit_usd == Decimal("0.002")
    assert period.spent_usd == sum(Decimal(str(a["estimated_cost_usd"])) for a in answers)


def test_the_gateway_path_records_exploration_on_its_decision(make_tenant, newcomer, seeded, settings):
    settings.ROUTERHUB_EXPLORATION_MAX_SHARE = 1.0
    tenant, _ = make_tenant(name="explorer", exploration_share=1.0)
    LLM.objects.filter(name__in=["newcomer", *KNOWN]).update(api_base="https://llm.example/v1", api_model="m")
    reset_all()
    chosen = []
    for prompt in sample_prompts(25):
        result = route_create(
            tenant=tenant,
            request=RouteRequest(
                text=prompt, input_tokens=50, models=["newcomer", *KNOWN], lam=0.0, source=Decision.Source.GATEWAY
            ),
        )
        decision = result.decision
        assert decision.explored == (decision.exploited is not None)
        if decision.explored:
            assert decision.exploited["name"] != result.llm.name
            # the gateway falls back to the exploiting choice first
            assert result.fallbacks[0].llm.name == decision.exploited["name"]
        chosen.append((result.llm.name, decision.explored))
    assert ("newcomer", True) in chosen


def test_the_share_applied_is_bounded_by_the_configured_maximum(settings):
    settings.ROUTERHUB_EXPLORATION_MAX_SHARE = 0.2
    assert scoring.exploration_share(Tenant(exploration_share=1.0)) == 0.2
    assert scoring.exploration_share(Tenant(exploration_share=0.05)) == 0.05
    settings.ROUTERHUB_EXPLORATION_MAX_SHARE = 0.0
    assert scoring.exploration_share(Tenant(exploration_share=0.05)) == 0.0


def test_staff_set_the_share_within_the_maximum_and_a_tenant_user_cannot_set_its_own(
    make_tenant, settings, django_user_model
):
    settings.ROUTERHUB_EXPLORATION_MAX_SHARE = 0.2
    tenant, key = make_tenant(name="acme")
    tenant.exploration_share = 0.5
    with pytest.raises(ValidationError, match=r"At most 0\.2 \(ROUTERHUB_EXPLORATION_MAX_SHARE\)"):
        tenant.full_clean()
    # Not through the route API: the option is refused, naming the field.
    response = ApiClient(key).route(exploration_share=1.0)
    assert response.status_code == 400
    assert "exploration_share" in response.json()["error"]["fields"]
    # Not through the admin: a tenant user is no staff.
    member = django_user_model.objects.create_user("member", password="pw-123456")
    TenantMembership.objects.create(user=member, tenant=tenant)
    browser = Client()
    browser.force_login(member)
    change = f"/admin/routing/tenant/{tenant.id}/change/"
    response = browser.post(change, {"name": "acme", "budget_usd": "100", "exploration_share": "0.2"})
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    tenant.refresh_from_db()
    assert tenant.exploration_share == 0.0
    # Staff set it on the tenant's page, within the maximum.
    staff = django_user_model.objects.create_superuser("root", password="pw-123456")
    browser.force_login(staff)
    form = {
        "name": "acme",
        "budget_usd": "100",
        "budget_period": "month",
        "when_budget_spent": "reject",
        "shadow_share": "0",
        "is_active": "on",
        "api_keys-TOTAL_FORMS": "1",
        "api_keys-INITIAL_FORMS": "1",
        "api_keys-0-id": tenant.api_keys.get().id,
        "api_keys-0-tenant": tenant.id,
        "api_keys-0-name": "",
        "presets-TOTAL_FORMS": "0",
        "presets-INITIAL_FORMS": "0",
    }
    refused = browser.post(change, {**form, "exploration_share": "0.5"})
    assert refused.status_code == 200
    assert "At most 0.2 (ROUTERHUB_EXPLORATION_MAX_SHARE)" in refused.content.decode()
    tenant.refresh_from_db()
    assert tenant.exploration_share == 0.0
    assert browser.post(change, {**form, "exploration_share": "0.2"}).status_code == 302
    tenant.refresh_from_db()
    assert tenant.exploration_share == 0.2
