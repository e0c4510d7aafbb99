"""Bad route requests get a clear JSON error and leave no decision behind."""

import pytest

from routing.models import Decision
from routing.services.tenancy import api_keys_revoke
from tests.fixtures.api import ROUTE, ApiClient

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \n"}, "prompt"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": ["a list"]}, "prompt"),
        ({"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]}, "prompt"),
        ({"messages": []}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"messages": [{"role": "assistant", "content": "no user turn"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "   "}]}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages"),
        ({"prompt": "hi", "lambda": -1}, "lambda"),
        ({"prompt": "hi", "lambda": "0.5"}, "lambda"),
        ({"prompt": "hi", "lambda": "cheap"}, "lambda"),
        ({"prompt": "hi", "lambda": True}, "lambda"),
        ({"prompt": "hi", "max_cost_usd": -0.01}, "max_cost_usd"),
        ({"prompt": "hi", "max_cost_usd": "1"}, "max_cost_usd"),
        ({"prompt": "hi", "quality_target": 1.5}, "quality_target"),
        ({"prompt": "hi", "quality_target": -0.1}, "quality_target"),
        ({"prompt": "hi", "models": "gpt-4o"}, "models"),
        ({"prompt": "hi", "models": []}, "models"),
        ({"prompt": "hi", "models": [3]}, "models"),
        ({"prompt": "hi", "models": ["no-such-llm", "gemini-1.5-pro-002"]}, "models"),
        ({"prompt": "hi", "strategy": "magic"}, "strategy"),
        ({"prompt": "hi", "lamda": 2}, "lamda"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_leaves_no_decision(api, fitted, body, field):
    response = api.post(ROUTE, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"], error
    assert all(isinstance(message, str) and message for message in error["fields"][field])
    assert Decision.objects.count() == 0


def test_unknown_llm_names_are_listed_in_the_error(api, fitted):
    error = api.route(models=["no-such-llm", "gemini-1.5-pro-002", "nor-this"]).json()["error"]
    assert "no-such-llm" in error["fields"]["models"][0] and "nor-this" in error["fields"]["models"][0]
    assert "gemini" not in error["fields"]["models"][0]


def test_prompt_over_the_configured_maximum_is_rejected(api, fitted, settings):
    settings.ROUTERHUB_MAX_PROMPT_CHARS = 50
    response = api.route("x" * 51)
    assert response.status_code == 400
    assert "at most 50" in response.json()["error"]["fields"]["prompt"][0]
    assert api.route("x" * 50).status_code == 200
    assert Decision.objects.count() == 1


def test_a_chat_over_the_maximum_counts_all_its_turns(api, fitted, settings):
    settings.ROUTERHUB_MAX_PROMPT_CHARS = 50
    messages = [{"role": "system", "content": "s" * 40}, {"role": "user", "content": "u" * 20}]
    response = api.post(ROUTE, {"messages": messages})
    assert response.status_code == 400 and "messages" in response.json()["error"]["fields"]


def test_malformed_json_is_a_400(api, fitted):
    response = api.post(ROUTE, '{"prompt": "unterminated')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert Decision.objects.count() == 0


def test_a_cost_cap_no_llm_meets_is_a_400_on_that_field(api, fitted):
    response = api.route(max_cost_usd=1e-12)
    assert response.status_code == 400
    assert "cheapest would cost" in response.json()["error"]["fields"]["max_cost_usd"][0]
    assert Decision.objects.count() == 0


def test_models_that_exist_but_are_not_allowed_are_a_400(make_tenant, fitted):
    from registry.models import LLM

    tenant, key = make_tenant(name="restricted")
    tenant.allowed_llms.set([LLM.objects.get(name="gemini-1.5-pro-002")])
    response = ApiClient(key).route(models=["jamba-1.5-large"])
    assert response.status_code == 400
    assert "not allowed" in response.json()["error"]["fields"]["models"][0]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer rh_not-a-real-key", "Token abc", "Bearer rh_a rh_b"])
def test_missing_or_unknown_key_is_a_401(fitted, header):
    client = ApiClient()
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.post(ROUTE, {"prompt": "hi"}, **extra)
    assert response.status_code == 401
    assert response.json()["error"]["code"] in {"not_authenticated", "authentication_failed"}
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert Decision.objects.count() == 0


def test_a_revoked_key_is_a_401(make_tenant, fitted):
    tenant, key = make_tenant()
    assert ApiClient(key).route().status_code == 200
    api_keys_revoke(keys=tenant.api_keys.all())
    response = ApiClient(key).route()
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]
    assert Decision.objects.count() == 1


def test_a_key_of_an_inactive_tenant_is_a_401(make_tenant, fitted):
    tenant, key = make_tenant()
    tenant.is_active = False
    tenant.save()
    assert ApiClient(key).route().status_code == 401


def test_no_fitted_routing_state_is_a_503_with_a_clear_message(api, prompt_set):
    response = api.route()
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "no_routing_state"
    assert "fit_router" in error["message"]
    assert Decision.objects.count() == 0


def test_unknown_decision_is_a_404(api, fitted):
    response = api.get("/api/v1/route/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
