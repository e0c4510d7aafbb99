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
