"""Django's browser middleware runs for pages and the API, and is skipped for the gateway (/v1/)."""

import pytest
from django.db import connections
from django.test import Client

pytestmark = pytest.mark.django_db


def test_pages_keep_sessions_and_frame_protection():
    response = Client().get("/admin/login/")
    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert "csrftoken" in response.cookies  # the login form's CSRF cookie: the CSRF middleware still runs


def test_the_gateway_answers_without_the_browser_middleware(monkeypatch):
    # The gateway's database threads close their connections after each job, as under the live server.
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    response = Client().get("/v1/models", headers={"Authorization": "Bearer rh_nope"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "Cookie" not in response.get("Vary", "")  # the session middleware was skipped
    assert "csrftoken" not in response.cookies


def _through_the_gateway_handler(method: str, path: str, **kwargs):
    """A request through the ASGI handler the web processes use for /v1/ (no server needed)."""
    import asyncio

    import httpx

    from routing.gateway.asgi import GatewayHandler

    async def call():
        transport = httpx.ASGITransport(app=GatewayHandler())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(call())


def test_the_gateway_handler_sends_djangos_security_headers():
    response = _through_the_gateway_handler(
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


def test_the_gateway_handler_redirects_to_https_when_production_asks(settings):
    settings.SECURE_SSL_REDIRECT = True
    response = _through_the_gateway_handler("GET", "/v1/models")
    assert response.status_code == 301
    assert response.headers["Location"] == "https://testserver/v1/models"


def test_the_gateway_handler_answers_unknown_paths_and_methods_in_openai_shape():
    unknown = _through_the_gateway_handler("GET", "/v1/embeddings")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "unknown_url"
    wrong_method = _through_the_gateway_handler("GET", "/v1/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "POST"
