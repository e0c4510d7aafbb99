"""The web processes as `make run` starts them: scripts/web.sh (uvicorn workers, routerhub.asgi, the
database connection pool) serving the gateway, the route API and the admin with its static files."""

from __future__ import annotations

import json

import httpx
import pytest
from django.db import connection

from tests.fixtures.web import serving_web

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def web_server(transactional_db, tmp_path):
    with serving_web(
        database=connection.settings_dict["NAME"], log_path=tmp_path / "web.log", ROUTERHUB_DB_POOL_MAX_SIZE="4"
    ) as url:
        yield url


def test_the_web_command_serves_gateway_api_and_admin(web_server, gateway_llms, upstream, tenant_and_key):
    from routing.models import Decision

    headers = {"Authorization": f"Bearer {tenant_and_key[1]}"}
    body = {"model": "gemini-1.5-flash-002", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", web_server + "/v1/chat/completions", json=body, headers=headers) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.status_code == 200 and lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "gemini-1.5-flash-002 heard: hi"
    routed = httpx.post(web_server + "/api/v1/route", json={"prompt": "What is 2+2?"}, headers=headers)
    assert routed.status_code == 200 and routed.json()["llm"]["name"]
    assert Decision.objects.filter(source="gateway", call_status="ok").count() == 1
    login = httpx.get(web_server + "/admin/login/")
    assert login.status_code == 200 and "csrfmiddlewaretoken" in login.text
    assert httpx.get(web_server + "/v1/models", headers=headers).json()["data"][0]["id"] == "routerhub-auto"
