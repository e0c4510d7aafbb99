"""The route API's bounds and what it tells: λ's upper bound, an unreachable quality target, and
Server-Timing that says nothing about other tenants' prompts."""

import pytest
from django.core.exceptions import ValidationError

from routing.selection import MAX_LAMBDA
from tests.fixtures.api import ApiClient

pytestmark = pytest.mark.django_db


def test_lambda_above_its_bound_is_a_400_naming_it(api, fitted):
    response = api.route(**{"lambda": MAX_LAMBDA * 10})
    assert response.status_code == 400 and "lambda" in response.json()["error"]["fields"]
    assert "less than or equal to 10000000000" in response.json()["error"]["fields"]["lambda"][0]
    body = api.route(**{"lambda": MAX_LAMBDA}).json()
    assert body["lambda_used"] == MAX_LAMBDA


def test_a_tenant_default_lambda_above_the_bound_is_refused(make_tenant):
    with pytest.raises(ValidationError, match="default_lambda"):
        make_tenant(name="greedy", default_lambda=1e300)


def test_an_unreachable_quality_target_says_so(api, fitted):
    body = api.route(quality_target=0.9999).json()
    assert body["lambda_reason"] == "quality_target" and body["predicted_quality"] < 0.9999
    assert body["notes"] == [
        "No allowed LLM is predicted to reach the quality target 0.9999: routed to the best predicted quality, "
        f"{body['predicted_quality']:.4f} ({body['llm']['name']})."
    ]
    assert all(a["predicted_quality"] <= body["predicted_quality"] for a in body["alternatives"])
    assert api.route(quality_target=0.1).json()["notes"] == []


def test_a_quality_target_reachable_only_above_the_cost_cap_says_so(api, fitted):
    best = api.route(quality_target=0.9999).json()  # the best predicted quality, and its cost
    target = best["predicted_quality"] - 1e-6
    capped = api.route(quality_target=target, max_cost_usd=best["estimated_cost_usd"] * 0.99).json()
    assert capped["predicted_quality"] < target
    assert capped["notes"][0].startswith(
        f"Only LLMs above the cost cap or what is left of the budget are predicted to reach the quality target {target:g}"
    )


def test_server_timing_does_not_tell_whether_another_tenant_routed_the_same_text(make_tenant, fitted):
    (_, alpha_key), (_, beta_key) = make_tenant(name="alpha"), make_tenant(name="beta")
    alpha, beta = ApiClient(alpha_key), ApiClient(beta_key)
    text = "Which of these is a prime number: 21, 27, 29 or 33?"

    def embed_timing(response) -> str:
        return dict(part.strip().split(";", 1) for part in response["Server-Timing"].split(","))["embed"]

    assert 'desc="computed"' in embed_timing(alpha.route(text))
    assert 'desc="computed"' in embed_timing(beta.route(text))  # alpha's request left no trace for beta
    assert 'desc="cached"' in embed_timing(alpha.route(text))  # a tenant's own repeats are still fast
