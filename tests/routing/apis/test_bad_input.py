"""Hostile or broken requests get a JSON 4xx naming what is wrong — never a 500, never an HTML page."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from registry.models import LLM
from routing.models import Decision
from tests.fixtures.api import ROUTE

pytestmark = pytest.mark.django_db


def deep(levels: int, key: str = "models") -> str:
    return '{"prompt": "hi", "' + key + '": ' + "[" * levels + '"x"' + "]" * levels + "}"


# -- body size --------------------------------------------------------------------------------------
def test_a_body_over_the_cap_is_a_413_in_json(api, fitted, settings):
    settings.ROUTERHUB_MAX_REQUEST_BYTES = 1000
    response = api.post(ROUTE, {"prompt": "x" * 2000})
    assert response.status_code == 413 and response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "too_large" and "at most 1,000" in error["message"]
    assert api.post(ROUTE, {"prompt": "x" * 900}).status_code == 200
    assert Decision.objects.count() == 1


def test_the_default_cap_is_one_megabyte(api, fitted):
    body = json.dumps({"prompt": "x" * (1024 * 1024)})
    response = api.post(ROUTE, body)
    assert response.status_code == 413
    assert "1,048,576" in response.json()["error"]["message"]


def test_a_chat_with_too_many_messages_is_a_400_on_messages(api, fitted, settings):
    settings.ROUTERHUB_MAX_MESSAGES = 10
    messages = [{"role": "user", "content": f"turn {i}"} for i in range(11)]
    response = api.post(ROUTE, {"messages": messages})
    assert response.status_code == 400
    assert "no more than 10" in response.json()["error"]["fields"]["messages"][0]
    assert api.post(ROUTE, {"messages": messages[:10]}).status_code == 200


# -- JSON that parses into trouble ------------------------------------------------------------------
@pytest.mark.parametrize("levels", [33, 1000, 100_000])
def test_deeply_nested_json_is_a_400_not_a_recursion_error(api, fitted, levels):
    response = api.post(ROUTE, deep(levels))
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert "nested deeper than 32 levels" in (error.get("fields", {}).get("models", [""])[0] or error["message"])
    assert Decision.objects.count() == 0


def test_nesting_within_the_limit_is_judged_by_the_field_itself(api, fitted):
    response = api.post(ROUTE, deep(5))
    assert response.status_code == 400 and "models" in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("body", "field", "what"),
    [
        ('{"prompt": "a\\u0000b"}', "prompt", "NUL"),
        ('{"prompt": "a\\ud800b"}', "prompt", "lone surrogate"),
        ('{"messages": [{"role": "user", "content": "hi\\u0000"}]}', "messages", "NUL"),
        ('{"messages": [{"role": "user", "content": "\\udfff"}]}', "messages", "lone surrogate"),
        ('{"messages": [{"role": "user", "content": [{"type": "text", "text": "x\\u0000"}]}]}', "messages", "NUL"),
        ('{"prompt": "hi", "models": ["gpt\\u0000"]}', "models", "NUL"),
        ('{"prompt": "hi", "\\u0000": 1}', "\x00", "NUL"),
    ],
)
def test_nul_characters_and_lone_surrogates_are_a_400_naming_the_field(api, fitted, body, field, what):
    response = api.post(ROUTE, body)
    assert response.status_code == 400, response.content[:300]
    messages = response.json()["error"]["fields"][field]
    assert what in messages[0]
    assert Decision.objects.count() == 0


def test_a_valid_surrogate_pair_is_an_ordinary_character(api, fitted):
    response = api.post(ROUTE, '{"prompt": "What is \\ud83d\\ude00 in Unicode?"}')
    assert response.status_code == 200
    assert "😀" in Decision.objects.get().routed_text


def test_nul_in_llm_metadata_is_a_400_not_a_database_error(db, admin_client):
    response = admin_client.post(
        "/api/v1/llms", '{"name": "m", "metadata": {"note": "a\\u0000b"}}', content_type="application/json"
    )
    assert response.status_code == 400
    assert "`metadata.note` contains a NUL character" in response.json()["error"]["fields"]["metadata"][0]
    assert not LLM.objects.exists()


def test_nested_field_errors_are_flat_lists_of_strings(api, fitted):
    response = api.post(ROUTE, {"messages": [{"role": "user", "content": "hi"}, {"role": "wizard", "content": "x"}]})
    fields = response.json()["error"]["fields"]
    assert fields["messages"] == ['[1].role: "wizard" is not a valid choice.']


def test_form_encoded_bodies_are_refused_with_415(api, fitted):
    response = api.client.post(ROUTE, {"prompt": "hi"}, HTTP_AUTHORIZATION=f"Bearer {api.key}")
    assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_media_type"


# -- errors outside the views are JSON too -----------------------------------------------------------
def test_unknown_api_paths_are_a_json_404(api):
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["error"] == {
        "code": "not_found",
        "message": "No API endpoint at /api/v1/nothing-here; see /api/docs/.",
    }
    assert "<html" in Client().get("/no-such-page").content.decode().lower()  # pages outside /api/ stay HTML


def test_a_wrong_method_is_a_json_405_with_allow(api, fitted):
    response = api.get(ROUTE)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in response["Allow"]


def test_a_crash_is_a_json_500_without_details(api, fitted, monkeypatch):
    def crash(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("routing.apis.usage.usage_summary", crash)
    api.client.raise_request_exception = False
    response = api.get("/api/v1/usage")
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "server_error" and "secret" not in response.content.decode()


def test_an_html_accept_header_still_gets_json_errors(api, fitted):
    response = api.post(ROUTE, {"prompt": ""}, HTTP_ACCEPT="text/html")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json()["error"]["fields"]["prompt"]


def test_a_bad_host_header_under_api_is_a_json_400(api):
    response = api.get("/api/v1/health", HTTP_HOST="evil.example")
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_request"
