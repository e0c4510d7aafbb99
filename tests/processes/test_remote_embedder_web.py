"""The web processes with an embedder service (ROUTERHUB_EMBEDDER=remote, a fake /v1/embeddings server in
the test process): scripts/web.sh refuses at start a service that disagrees with the active routing
state and serves with one that agrees; the gateway's routed calls get a 503 while it is down, calls
that name an LLM do not need it."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import openai
import pytest
from django.db import connection

from registry import embedders
from tests.fakes.fake_embeddings import FakeEmbeddings
from tests.processes.workers import PROJECT_DIR, TEST_UPSTREAM_HOSTS, free_port, stop_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

MODEL = "fake-minilm"
QUESTION = [{"role": "user", "content": "What is the derivative of x**3 + 2x with respect to x?"}]


@pytest.fixture
def service():
    with FakeEmbeddings(model=MODEL) as server:
        yield server


@pytest.fixture
def remote(settings, service):
    settings.ROUTERHUB_EMBEDDER = "remote"
    settings.ROUTERHUB_EMBEDDER_URL = service.url
    settings.ROUTERHUB_EMBEDDER_MODEL = MODEL
    settings.ROUTERHUB_EMBEDDER_TIMEOUT_SECONDS = 0.5
    embedders._embedder.cache_clear()
    yield service
    embedders._embedder.cache_clear()


def start_web(service, tmp_path, **extra) -> tuple[subprocess.Popen, str, object]:
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "routerhub.settings",
        "DATABASE_NAME": connection.settings_dict["NAME"],
        "ROUTERHUB_EMBEDDER": "remote",
        "ROUTERHUB_EMBEDDER_URL": service.url,
        "ROUTERHUB_EMBEDDER_MODEL": MODEL,
        "ROUTERHUB_UPSTREAM_ALLOWED_HOSTS": ",".join(TEST_UPSTREAM_HOSTS),
        "WEB_CONCURRENCY": "1",
        "ROUTERHUB_DB_POOL_MAX_SIZE": "4",
        **extra,
    }
    log = tmp_path / "web.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            ["scripts/web.sh", "--port", str(port)], cwd=PROJECT_DIR, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    return process, f"http://127.0.0.1:{port}", log


def wait_until_serving(process, url: str, log) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/admin/login/", timeout=1)
            return
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process)
                raise AssertionError(log.read_text()[-4000:]) from None
            time.sleep(0.2)


def test_the_web_command_refuses_a_service_that_serves_another_model_and_says_why(fitted, remote, tmp_path):
    # The state was fitted on the hashing embedder's vectors; the service is another embedder.
    process, _, log = start_web(remote, tmp_path)
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


def test_the_web_command_serves_with_a_service_that_agrees_with_the_state(remote, fitted, tenant_and_key, tmp_path):
    assert fitted.embedder == f"remote:{MODEL}"
    process, url, log = start_web(remote, tmp_path)
    try:
        wait_until_serving(process, url, log)
        headers = {"Authorization": f"Bearer {tenant_and_key[1]}"}
        routed = httpx.post(url + "/api/v1/route", json={"prompt": "Name a noble gas."}, headers=headers, timeout=30)
        assert routed.status_code == 200, routed.text
        assert remote.requests[-1]["body"]["input"] == ["Name a noble gas."]
        # The same service answering for another model now: every new prompt is refused, none routed.
        remote.answer_model = "another-model"
        refused = httpx.post(url + "/api/v1/route", json={"prompt": "Name a metal."}, headers=headers, timeout=30)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "embedder_unavailable"
        assert "made by model 'another-model'" in refused.json()["error"]["message"]
    finally:
        stop_process(process)


def test_routed_gateway_calls_get_a_503_while_the_service_is_down_and_named_llms_still_answer(
    remote, gateway_llms, gateway, tenant_and_key
):
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=tenant_and_key[1], max_retries=0, timeout=30)
    answer = client.chat.completions.create(model="routerhub-auto", messages=QUESTION)
    assert answer.choices[0].message.content
    remote.delay = 2.0
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
