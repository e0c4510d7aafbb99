"""The handler of calls made with a tenant's API key (routerhub/handlers.py): which requests it serves,
and that they get what Django's usual handler gives them — headers, JSON errors, decisions."""

import asyncio
import threading

import httpx
import pytest
from django.db import connections

import routing.apis.decisions as decisions_api
from routerhub.handlers import ApiKeyHandler, called_with_api_key
from routing.models import Decision
from tests.fixtures.api import ROUTE


def _scope(path: str, *headers: tuple[bytes, bytes]) -> dict:
    return {"type": "http", "path": path, "headers": list(headers)}


def test_it_serves_the_gateway_and_api_calls_with_a_bearer_key_only():
    bearer = (b"authorization", b"Bearer rh_abc")
    assert called_with_api_key(_scope("/v1/chat/completions"))
    assert called_with_api_key(_scope("/v1/models", bearer))
    assert called_with_api_key(_scope("/api/v1/route", (b"authorization", b"bearer rh_abc")))
    # staff calls with the admin's session, pages and the admin: Django's usual handler
    assert not called_with_api_key(_scope("/api/v1/llms", (b"cookie", b"sessionid=x")))
    assert not called_with_api_key(_scope("/api/v1/route", (b"authorization", b"Basic dXNlcjpwYXNz")))
    assert not called_with_api_key(_scope("/admin/", bearer))
    assert not called_with_api_key(_scope("/", bearer))
    assert not called_with_api_key({"type": "lifespan"})


def _through_the_handler(method: str, path: str, **kwargs) -> httpx.Response:
    """A request through the ASGI handler the web processes use for these calls (no server needed)."""

    async def call():
        transport = httpx.ASGITransport(app=ApiKeyHandler())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(call())


@pytest.fixture
def live_database(transactional_db, monkeypatch):
    """Views run in threads of their own, which must see committed rows and close their connections."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)


@pytest.mark.django_db
def test_the_gateway_gets_djangos_security_headers():
    response = _through_the_handler(
        "POST",
        "/v1/chat/completions",
        json={"model": "routerhub-auto", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "set-cookie" not in response.headers


@pytest.mark.django_db
def test_it_redirects_to_https_when_production_asks(settings):
    settings.SECURE_SSL_REDIRECT = True
    response = _through_the_handler("GET", "/v1/models")
    assert response.status_code == 301
    assert response.headers["Location"] == "https://testserver/v1/models"


@pytest.mark.django_db
def test_the_gateway_answers_unknown_paths_and_methods_in_openai_shape():
    unknown = _through_the_handler("GET", "/v1/embeddings")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_url"
    wrong_method = _through_the_handler("GET", "/v1/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "POST"


def test_a_route_call_is_decided_recorded_and_shown(live_database, fitted, tenant_and_key):
    tenant, key = tenant_and_key
    auth = {"Authorization": f"Bearer {key}"}
    routed = _through_the_handler("POST", ROUTE, json={"prompt": "What is the derivative of x**2?"}, headers=auth)
    assert routed.status_code == 200, routed.text
    answer = routed.json()
    decision = Decision.objects.get(id=answer["decision_id"])
    assert decision.tenant == tenant and decision.llm.name == answer["llm"]["name"]
    assert routed.headers["X-Content-Type-Options"] == "nosniff" and "set-cookie" not in routed.headers
    shown = _through_the_handler("GET", f"{ROUTE}/{answer['decision_id']}", headers=auth)
    assert shown.status_code == 200 and shown.json()["llm"]["name"] == answer["llm"]["name"]


def test_api_errors_stay_json_naming_the_field(live_database, fitted, tenant_and_key, settings):
    _, key = tenant_and_key
    auth = {"Authorization": f"Bearer {key}"}
    missing = _through_the_handler("POST", ROUTE, json={"lambda": 1}, headers=auth)
    assert missing.status_code == 400 and "prompt" in missing.json()["error"]["fields"]
    unknown = _through_the_handler("GET", "/api/v1/nothing-here", headers=auth)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    settings.ROUTERHUB_MAX_REQUEST_BYTES = 100
    too_big = _through_the_handler("POST", ROUTE, json={"prompt": "x" * 200}, headers=auth)
    assert too_big.status_code == 413 and "at most 100" in too_big.json()["error"]["message"]
    revoked = _through_the_handler("POST", ROUTE, json={"prompt": "hi"}, headers={"Authorization": "Bearer rh_no"})
    assert revoked.status_code == 401 and revoked.json()["error"]["code"]
    assert not Decision.objects.exists()


def test_api_views_run_on_the_processes_fixed_threads_not_a_new_thread_per_call(
    live_database, fitted, tenant_and_key, settings, monkeypatch
):
    _, key = tenant_and_key
    served_by = []
    route_create = decisions_api.route_create

    def recorded(**kwargs):
        served_by.append(threading.current_thread().name)
        return route_create(**kwargs)

    monkeypatch.setattr(decisions_api, "route_create", recorded)
    auth = {"Authorization": f"Bearer {key}"}
    for i in range(12):
        routed = _through_the_handler("POST", ROUTE, json={"prompt": f"Question {i}: what is 2 + {i}?"}, headers=auth)
        assert routed.status_code == 200, routed.text
    assert len(served_by) == 12
    assert all(name.startswith("gateway") for name in served_by), served_by
    assert len(set(served_by)) <= settings.ROUTERHUB_GATEWAY_THREADS
