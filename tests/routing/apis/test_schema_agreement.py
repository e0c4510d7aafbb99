"""The OpenAPI schema (/api/schema/) tells the truth: for each request below, the schema accepts it
exactly when the server does, and what both refuse is a 400 naming the field. The requests sit at
the edges of each rule — an empty list, a blank string, a chat without a user turn with text, a
field the API does not know, a job's fields that belong to another kind, an empty query parameter.
(tests/processes/test_api_fuzz.py puts the same question to schemathesis over generated requests.)"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.test import Client
from jsonschema import Draft4Validator

from registry.models import LLM
from routing.apis.serializers import NOT_BLANK
from tests.fixtures.api import ROUTE, ApiClient

pytestmark = pytest.mark.django_db

AN_LLM = "<the first LLM of the slice>"  # replaced by a registered name when the request is sent
QUESTION = "What is the derivative of x**2?"
IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}


def as_json_schema(node, components: dict):
    """OpenAPI 3.0's schema object as plain JSON Schema: references inlined, ``nullable`` as null allowed."""
    if isinstance(node, list):
        return [as_json_schema(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return as_json_schema(components[node["$ref"].rpartition("/")[2]], components)
    converted = {key: as_json_schema(value, components) for key, value in node.items() if key != "nullable"}
    return {"anyOf": [converted, {"type": "null"}]} if node.get("nullable") else converted


@pytest.fixture(scope="module")
def openapi(django_db_blocker):
    with django_db_blocker.unblock():
        return yaml.safe_load(Client().get("/api/schema/").content)


def body_schema(openapi: dict, method: str, path: str) -> Draft4Validator:
    body = openapi["paths"][path][method.lower()]["requestBody"]
    schema = as_json_schema(body["content"]["application/json"]["schema"], openapi["components"]["schemas"])
    return Draft4Validator(schema)


def test_a_body_is_required_where_an_empty_one_is_refused(openapi):
    required = {
        (method, path): operation["requestBody"].get("required", False)
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    }
    assert required == {
        ("post", ROUTE): True,
        ("post", "/api/v1/route/{decision_id}/feedback"): True,
        ("post", "/api/v1/llms"): True,
        ("post", "/api/v1/jobs"): True,
        ("patch", "/api/v1/llms/{name}"): False,  # changes nothing: answered 200
    }


def with_names(body, name: str):
    return json.loads(json.dumps(body).replace(json.dumps(AN_LLM), json.dumps(name)))


def user(content, **fields) -> dict:
    return {"role": "user", "content": content, **fields}


# (body, None when accepted, else the field the 400 names)
ROUTE_BODIES = [
    ({"prompt": QUESTION}, None),
    ({"prompt": QUESTION, "models": [AN_LLM]}, None),
    ({"messages": [user(QUESTION)]}, None),
    ({"messages": [{"role": "system", "content": None}, user([{"type": "text", "text": QUESTION}, IMAGE])]}, None),
    ({"messages": [user(QUESTION), {"role": "assistant", "content": "Send the plot."}, user([IMAGE])]}, None),
    ({"messages": [user(QUESTION, name="ada", tool_call_id="x")]}, None),  # other OpenAI message keys: ignored
    ({"prompt": QUESTION, "models": []}, "models"),
    ({"prompt": QUESTION, "models": [" \t"]}, "models"),
    ({"prompt": " \n\u3000"}, "prompt"),
    ({"prompt": QUESTION, "messages": [user(QUESTION)]}, "prompt"),
    ({}, "prompt"),
    ({"prompt": QUESTION, "lamda": 1}, "lamda"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "Be brief."}]}, "messages"),
    ({"messages": [user(" \x1c\x85")]}, "messages"),  # blank to Python: str.isspace() counts these
    ({"messages": [user([IMAGE]), user(None)]}, "messages"),
    ({"messages": [user([{"type": "text"}])]}, "messages"),
    ({"messages": [user([{}])]}, "messages"),
    ({"messages": [user(QUESTION, name=" ")]}, "messages"),
]

FEEDBACK_BODIES = [
    ({"quality_score": 1}, None),
    ({"input_tokens": 12, "output_tokens": 40, "latency_ms": 900.5}, None),
    ({}, "non_field_errors"),
    ({"cost": 0.01}, "cost"),
    ({"quality_score": 1.5}, "quality_score"),
]

STAFF_BODIES = [
    (
        "POST",
        "/api/v1/llms",
        {
            "name": "tiny-1b",
            "api_base": "https://llm.example.com/v1",
            "api_key_env": "ROUTERHUB_LLM_KEY_TINY",
            "usd_per_mtok_in": 0.1,
            "context_window": 8192,
        },
        None,
    ),
    ("POST", "/api/v1/llms", {"name": " tiny-1b"}, "name"),
    ("POST", "/api/v1/llms", {"name": "tiny-1b", "usd_per_mtok_out": -0.01}, "usd_per_mtok_out"),
    ("POST", "/api/v1/llms", {"name": "tiny-1b", "api_key_env": "OPENAI_API_KEY"}, "api_key_env"),
    ("POST", "/api/v1/llms", {"name": "tiny-1b", "api_base": "ftp://llm.example.com/v1"}, "api_base"),
    ("POST", "/api/v1/llms", {"name": "tiny-1b", "context_window": 2**31}, "context_window"),
    ("PATCH", "/api/v1/llms/{name}", {"usd_per_query": 0.002, "is_active": False}, None),
    ("PATCH", "/api/v1/llms/{name}", {"usd_per_query": -1e-34}, "usd_per_query"),
    ("PATCH", "/api/v1/llms/{name}", {"": 1}, ""),
    ("POST", "/api/v1/jobs", {"kind": "reprofile_all", "arguments": {"concurrency": 2, "grader": None}}, None),
    ("POST", "/api/v1/jobs", {"kind": "profile_llm", "llm": AN_LLM}, None),
    ("POST", "/api/v1/jobs", {"kind": "refit", "strategy": "uniroute_kmeans", "arguments": {}}, None),
    ("POST", "/api/v1/jobs", {"kind": "profile_llm"}, "llm"),
    ("POST", "/api/v1/jobs", {"kind": "reprofile_all", "strategy": "knn"}, "strategy"),
    ("POST", "/api/v1/jobs", {"kind": "reprofile_all", "llm": AN_LLM}, "llm"),
    ("POST", "/api/v1/jobs", {"kind": "refit", "arguments": {"concurrency": 2}}, "arguments"),
    ("POST", "/api/v1/jobs", {"kind": "reprofile_all", "arguments": {"concurrency": 2.5}}, "arguments"),
    ("POST", "/api/v1/jobs", {"kind": "reprofile_all", "arguments": {"grader": "vibes"}}, "arguments"),
    ("POST", "/api/v1/jobs", {"kind": "reprofile_all", "arguments": {"timeout_seconds": 0}}, "arguments"),
]


def disagreements(validator: Draft4Validator, body, response, refused_field: str | None) -> list:
    """What the schema and the server said of ``body``, when either is not what was expected."""
    schema_says = "accepted" if validator.is_valid(body) else "refused"
    server_says = "accepted" if response.status_code < 300 else "refused"
    expected = "accepted" if refused_field is None else "refused"
    named = refused_field is None or (
        response.status_code == 400 and refused_field in response.json()["error"].get("fields", {})
    )
    if (schema_says, server_says, named) == (expected, expected, True):
        return []
    return [{"body": body, "schema": schema_says, "server": response.content[:300], "expected": expected}]


def test_route_requests(openapi, api, fitted):
    """One test for every body: the fitted state is the slow part, and it serves them all."""
    name = LLM.objects.order_by("name").first().name
    validator = body_schema(openapi, "POST", ROUTE)
    found = []
    for body, refused_field in ROUTE_BODIES:
        body = with_names(body, name)
        found += disagreements(validator, body, api.post(ROUTE, body), refused_field)
    assert found == []


def test_feedback_requests(openapi, api, fitted):
    validator = body_schema(openapi, "POST", "/api/v1/route/{decision_id}/feedback")
    decision = api.route().json()["decision_id"]
    found = []
    for body, refused_field in FEEDBACK_BODIES:
        found += disagreements(validator, body, api.post(f"{ROUTE}/{decision}/feedback", body), refused_field)
    assert found == []


@pytest.fixture
def staff():
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("staff", password="not-used-here-1"))
    return client


def test_staff_requests(openapi, staff, fitted):
    name = LLM.objects.order_by("name").first().name
    found = []
    for method, path, body, refused_field in STAFF_BODIES:
        body = with_names(body, name)
        send = staff.post if method == "POST" else staff.patch
        response = send(path.replace("{name}", name), json.dumps(body), content_type="application/json")
        found += disagreements(body_schema(openapi, method, path), body, response, refused_field)
    assert found == []


def test_a_registered_name_is_a_conflict(staff, fitted):
    name = LLM.objects.order_by("name").first().name
    response = staff.post("/api/v1/llms", {"name": name}, content_type="application/json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    assert f"{name!r} is registered already" in response.json()["error"]["message"]


# --- query parameters ----------------------------------------------------------------------------


def test_an_empty_date_is_refused_naming_it(openapi, api, fitted):
    parameters = {p["name"]: p["schema"] for p in openapi["paths"]["/api/v1/usage"]["get"]["parameters"]}
    assert parameters["until"] == {"type": "string", "format": "date"}  # "" is no date
    for name in ("since", "until"):
        response = api.get(f"/api/v1/usage?{name}=")
        assert response.status_code == 400 and "Date has wrong format" in response.json()["error"]["fields"][name][0]


def test_a_range_that_ends_before_it_starts_is_empty(api, fitted):
    api.route()
    response = api.get("/api/v1/usage", {"since": "2030-01-10", "until": "2030-01-01"})
    assert response.status_code == 200, response.content
    usage = response.json()
    assert (usage["since"], usage["until"], usage["totals"]["requests"], usage["by_day"]) == (
        "2030-01-10",
        "2030-01-01",
        0,
        [],
    )


def test_the_last_day_of_the_calendar_is_a_day_like_any_other(api, fitted):
    api.route()
    response = api.get("/api/v1/usage", {"since": "2000-01-01", "until": "9999-12-31"})
    assert response.status_code == 200, response.content
    assert response.json()["totals"]["requests"] == 1


def test_staff_asking_for_an_unknown_tenant_get_a_404(staff, fitted):
    unknown = staff.get("/api/v1/usage", {"tenant": "nobody"})
    assert unknown.status_code == 404 and "'nobody'" in unknown.json()["error"]["message"]
    blank = staff.get("/api/v1/usage", {"tenant": " "})
    assert blank.status_code == 400 and "tenant" in blank.json()["error"]["fields"]


def test_an_empty_job_filter_is_refused_naming_it(staff):
    for name in ("kind", "status", "llm", "limit"):
        response = staff.get(f"/api/v1/jobs?{name}=")
        assert response.status_code == 400 and name in response.json()["error"]["fields"], (name, response.content)


# --- credentials ---------------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", ["Basic c3RhZmY6cGFzcw==", '7"DN`', ""])
def test_a_session_does_not_cover_for_credentials_that_are_not_a_key(staff, fitted, authorization):
    assert staff.get("/api/v1/llms").status_code == 200
    refused = staff.get("/api/v1/llms", HTTP_AUTHORIZATION=authorization)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "authentication_failed"


def test_a_tenant_key_still_works_alone(tenant_and_key, fitted):
    assert ApiClient(tenant_and_key[1]).get("/api/v1/llms").status_code == 200


def test_the_schemas_blank_is_pythons_blank():
    """The pattern the schema gives a string that may not be blank finds a character in exactly the
    strings that ``str.strip()`` (and so DRF's blank check) leaves non-empty."""
    pattern = re.compile(NOT_BLANK)
    assert [c for c in map(chr, range(0x110000)) if not pattern.search(c)] == [
        c for c in map(chr, range(0x110000)) if c.isspace()
    ]
