"""The route API with an embedder service (ROUTERHUB_EMBEDDER=remote, a fake /v1/embeddings server):
prompts are imported and routed with its vectors, its failures are a 503 naming it, and a web process
refuses at start a service that disagrees with the active routing state."""

from __future__ import annotations

import numpy as np
import pytest

from registry.embedders import HashingEmbedder
from registry.models import Prompt
from routing.caches import reset_all
from routing.models import Decision
from routing.selectors.embeddings import remote_embedder_refusal
from tests.fixtures.api import ROUTE
from tests.fixtures.embedder_service import EMBEDDER_MODEL as MODEL


@pytest.fixture
def remote_state(remote_embedder, fitted):
    """The slice imported and fitted with the service's vectors."""
    return fitted


def test_prompts_are_imported_and_routed_with_the_services_vectors(api, remote_state, remote_embedder):
    assert remote_state.embedder == f"remote:{MODEL}"
    stored = Prompt.objects.filter(prompt_set=remote_state.prompt_set).values_list("embedder", flat=True)
    assert set(stored) == {f"remote:{MODEL}"} and len(stored) == 200
    imported = sum(len(r["body"]["input"]) for r in remote_embedder.requests)
    assert imported == 200 and {r["authorization"] for r in remote_embedder.requests} == {"Bearer sk-embedder"}

    response = api.post(ROUTE, {"prompt": "Which enzyme unwinds DNA at the replication fork?"})
    assert response.status_code == 200, response.content
    assert remote_embedder.requests[-1]["body"]["input"] == ["Which enzyme unwinds DNA at the replication fork?"]
    assert response.json()["llm"]["name"] and Decision.objects.count() == 1


def test_a_service_that_times_out_is_a_503_naming_the_embedder_and_no_decision(api, remote_state, remote_embedder):
    remote_embedder.delay = 2.0
    response = api.post(ROUTE, {"prompt": "What is the capital of Australia?"})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json() == {
        "error": {
            "code": "embedder_unavailable",
            "message": f"The embedder remote:{MODEL} is unavailable: no answer within 0.5 s. Try again shortly.",
        }
    }
    assert Decision.objects.count() == 0
    # The next prompt fails at once, without waiting for the service again.
    response = api.post(ROUTE, {"prompt": "And of Canada?"})
    assert response.status_code == 503 and "not tried again for 5 s" in response.json()["error"]["message"]
    assert remote_embedder.requests[-1]["body"]["input"] == ["What is the capital of Australia?"]


def test_a_prompt_embedded_before_still_routes_while_the_service_is_down(api, remote_state, remote_embedder):
    assert api.post(ROUTE, {"prompt": "Explain photosynthesis."}).status_code == 200
    reset_all()  # only the shared cache (the database) is left
    remote_embedder.status, remote_embedder.body = 502, "upstream down"
    assert api.post(ROUTE, {"prompt": "Explain photosynthesis."}).status_code == 200
    response = api.post(ROUTE, {"prompt": "Explain respiration."})
    assert response.status_code == 503
    assert response.json()["error"]["message"] == (
        f"The embedder remote:{MODEL} is unavailable: it answered HTTP 502. Try again shortly."
    )


def test_vectors_of_another_width_at_route_time_are_a_503_not_a_route(api, remote_state, remote_embedder):
    remote_embedder.dimensions = 768
    response = api.post(ROUTE, {"prompt": "What is 7 times 8?"})
    assert response.status_code == 503
    assert "768-dimensional vectors; routerhub stores 384" in response.json()["error"]["message"]
    assert "127.0.0.1" not in response.content.decode()  # the service's address stays inside


# --- the start-up check ------------------------------------------------------------------------------


def test_a_service_that_agrees_with_the_active_state_is_accepted(remote_state, remote_embedder):
    assert remote_embedder_refusal() is None
    checked = remote_embedder.requests[-1]["body"]["input"]
    assert len(checked) == 8 and set(checked) <= set(
        Prompt.objects.filter(prompt_set=remote_state.prompt_set).values_list("text", flat=True)
    )


def test_a_service_answering_for_another_model_is_refused(remote_state, remote_embedder):
    remote_embedder.answer_model = "BAAI/bge-small-en-v1.5"
    refusal = remote_embedder_refusal()
    assert refusal == (
        f"The embedder service remote:{MODEL} cannot be used: {remote_embedder.url}/embeddings answered unusably: "
        f"it was made by model 'BAAI/bge-small-en-v1.5', not '{MODEL}'."
    )


def test_a_service_of_another_width_is_refused(remote_state, remote_embedder):
    remote_embedder.dimensions = 768
    assert "768-dimensional vectors; routerhub stores 384" in remote_embedder_refusal()


def test_a_service_that_does_not_answer_is_refused(remote_state, remote_embedder):
    remote_embedder.delay = 2.0
    assert remote_embedder_refusal() == (
        f"The embedder service remote:{MODEL} cannot be used: {remote_embedder.url}/embeddings: no answer within 0.5 s."
    )


def test_a_service_giving_other_vectors_under_the_same_name_is_refused(remote_state, remote_embedder):
    # Another model (or revision, or precision) behind the same name: the vectors of a model whose
    # vocabulary hashes differently.
    remote_embedder.embed = lambda texts: HashingEmbedder().embed([text[::-1] for text in texts])
    refusal = remote_embedder_refusal()
    assert refusal.startswith(
        f"The embedder service remote:{MODEL} gives other vectors than those the active routing state "
        f"v{remote_state.version} was fitted on: cosine "
    )
    assert "at worst on 8 of its prompts (at least 0.99 needed)" in refusal


def test_a_state_fitted_with_another_embedder_refuses_the_service(fitted, remote_embedder):
    assert fitted.embedder == "hashing-test-only"  # imported and fitted before the service was configured
    assert remote_embedder_refusal() == (
        f"The active routing state v{fitted.version} (uniroute_kmeans) was fitted on prompts embedded by "
        f"'hashing-test-only', but ROUTERHUB_EMBEDDER gives 'remote:{MODEL}': its vectors would be compared "
        "with another model's. Import the data again with this embedder and fit a router (manage.py "
        "import_routing_data, fit_router), or configure the embedder the state was fitted with."
    )


def test_without_a_routing_state_only_the_service_itself_is_checked(remote_embedder, db):
    assert remote_embedder_refusal() is None and len(remote_embedder.requests) == 1
    remote_embedder.dimensions = 100
    assert "100-dimensional" in remote_embedder_refusal()


def test_in_process_embedders_are_not_asked(fitted, settings):
    settings.ROUTERHUB_EMBEDDER = "hashing"
    assert remote_embedder_refusal() is None


def test_the_vectors_the_service_gave_at_import_are_what_is_stored(remote_state):
    prompt = Prompt.objects.filter(prompt_set=remote_state.prompt_set).order_by("id").first()
    np.testing.assert_allclose(prompt.embedding, HashingEmbedder().embed_one(prompt.text), atol=1e-6)


def test_try_it_says_the_embedder_is_unavailable_instead_of_ranking(remote_state, remote_embedder):
    import html
    import json

    from django.test import Client

    from tests.fixtures.dashboard import staff_user

    client = Client()
    client.force_login(staff_user("root", "view_routingstate"))
    remote_embedder.delay = 2.0
    page = client.post("/try/", {"prompt": "Name a noble gas.", "lambda": "0"})
    assert page.status_code == 200
    assert f"The embedder remote:{MODEL} is unavailable: no answer within 0.5 s. Try again shortly." in html.unescape(
        page.content.decode()
    )
    ranked = client.post(
        "/try/rank", json.dumps({"prompt": "Name a metal.", "lambda": 0}), content_type="application/json"
    )
    assert ranked.status_code == 503 and ranked.json()["error"]["code"] == "embedder_unavailable"
