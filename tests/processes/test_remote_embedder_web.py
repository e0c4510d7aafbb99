"""The web processes with an embedder service (ROUTERHUB_EMBEDDER=remote, a fake /v1/embeddings server in
the test process): scripts/web.sh refuses at start a service that disagrees with the active routing
state and serves with one that agrees; the gateway's routed calls get a 503 while it is down, calls
that name an LLM do not need it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import openai
import pytest
from django.db import connection

from tests.fixtures.embedder_service import EMBEDDER_MODEL as MODEL
from tests.fixtures.gateway import QUESTION
from tests.fixtures.web import start_web, wait_until_answering
from tests.processes.workers import stop_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def start_web_with(service, tmp_path) -> tuple[subprocess.Popen, str, Path]:
    """scripts/web.sh with the embedder service ``service`` (not waited for: it may refuse to start)."""
    log_path = tmp_path / "web.log"
    process, url = start_web(
        database=connection.settings_dict["NAME"],
        log_path=log_path,
        ROUTERHUB_EMBEDDER="remote",
        ROUTERHUB_EMBEDDER_URL=service.url,
        ROUTERHUB_EMBEDDER_MODEL=MODEL,
        ROUTERHUB_DB_POOL_MAX_SIZE="4",
    )
    return process, url, log_path


def test_the_web_command_refuses_a_service_that_serves_another_model_and_says_why(fitted, remote_embedder, tmp_path):
    # The state was fitted on the hashing embedder's vectors; the service is another embedder.
    process, _, log = start_web_with(remote_embedder, tmp_path)
    try:
        assert process.wait(timeout=60) == 3  # uvicorn's start-up failure
    finally:
        stop_process(process)
    text = log.read_text()
    assert (
        f"The active routing state v{fitted.version} (uniroute_kmeans) was fitted on prompts embedded by "
        f"'hashing-test-only', but ROUTERHUB_EMBEDDER gives 'remote:{MODEL}'" in text
    )
    assert "Application startup failed. Exiting." in text


def test_the_web_command_serves_with_a_service_that_agrees_with_the_state(
    remote_embedder, fitted, tenant_and_key, tmp_path
):
    assert fitted.embedder == f"remote:{MODEL}"
    process, url, log = start_web_with(remote_embedder, tmp_path)
    try:
        wait_until_answering(url + "/admin/login/", process, log)
        headers = {"Authorization": f"Bearer {tenant_and_key[1]}"}
        routed = httpx.post(url + "/api/v1/route", json={"prompt": "Name a noble gas."}, headers=headers, timeout=30)
        assert routed.status_code == 200, routed.text
        assert remote_embedder.requests[-1]["body"]["input"] == ["Name a noble gas."]
        # The same service answering for another model now: every new prompt is refused, none routed.
        remote_embedder.answer_model = "another-model"
        refused = httpx.post(url + "/api/v1/route", json={"prompt": "Name a metal."}, headers=headers, timeout=30)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "embedder_unavailable"
        assert "made by model 'another-model'" in refused.json()["error"]["message"]
    finally:
        stop_process(process)


def test_routed_gateway_calls_get_a_503_while_the_service_is_down_and_named_llms_still_answer(
    remote_embedder, gateway_llms, gateway, tenant_and_key
):
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=tenant_and_key[1], max_retries=0, timeout=30)
    answer = client.chat.completions.create(model="routerhub-auto", messages=QUESTION)
    assert answer.choices[0].message.content
    remote_embedder.delay = 2.0
    with pytest.raises(openai.InternalServerError) as failure:
        client.chat.completions.create(model="routerhub-auto", messages=[{"role": "user", "content": "Name a gas."}])
    assert failure.value.status_code == 503 and failure.value.response.headers["Retry-After"] == "5"
    assert failure.value.body == {
        "message": f"The embedder remote:{MODEL} is unavailable: no answer within 0.5 s. "
        "Try again shortly, or name an LLM as the model.",
        "type": "server_error",
        "param": None,
        "code": "embedder_unavailable",
    }
    direct = client.chat.completions.create(model="gemini-1.5-flash-002", messages=QUESTION)
    assert direct.choices[0].message.content.startswith("gemini-1.5-flash-002 heard:")
