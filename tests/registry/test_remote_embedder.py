"""The embedder service client (ROUTERHUB_EMBEDDER=remote) against a fake OpenAI-compatible
/v1/embeddings server: what it sends, what it accepts, and how each failure reads."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from registry import remote_embeddings
from registry.embedders import HashingEmbedder, RemoteEmbedder
from registry.remote_embeddings import EmbedderUnavailable
from tests.fixtures.embedder_service import EMBEDDER_MODEL

TEXTS = ["What is the derivative of x squared?", "Which court decided Marbury v. Madison?", ""]


def remote(embedder_service, **options) -> RemoteEmbedder:
    return RemoteEmbedder(
        **{"url": embedder_service.url, "model": EMBEDDER_MODEL, "api_key": "", "timeout": 5.0, **options}
    )


def test_it_sends_the_model_and_texts_and_returns_the_services_vectors_normalised(embedder_service):
    vectors = remote(embedder_service, api_key="sk-embed-123").embed(TEXTS)
    np.testing.assert_allclose(vectors, HashingEmbedder().embed(TEXTS), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    (request,) = embedder_service.requests
    assert request["path"] == "/v1/embeddings"
    assert request["body"]["model"] == "fake-minilm" and request["body"]["encoding_format"] == "float"
    assert sorted(request["body"]["input"]) == sorted(TEXTS)
    assert request["authorization"] == "Bearer sk-embed-123"


def test_no_key_sends_no_authorization_and_a_full_endpoint_url_is_taken_as_it_is(embedder_service):
    remote(embedder_service, url=embedder_service.url + "/embeddings/").embed_one("hello")
    assert (
        embedder_service.requests[0]["authorization"] is None
        and embedder_service.requests[0]["path"] == "/v1/embeddings"
    )


def test_many_texts_go_in_calls_of_at_most_32_and_each_vector_stays_with_its_text(embedder_service):
    texts = [f"question number {i} about topic {i % 7}" for i in range(70)]
    embedder_service.shuffle = True  # answers in reverse order, each with its index
    vectors = remote(embedder_service).embed(texts)
    assert [len(r["body"]["input"]) for r in embedder_service.requests] == [32, 32, 6]
    np.testing.assert_allclose(vectors, HashingEmbedder().embed(texts), atol=1e-6)


def test_fingerprint_names_the_service_model_and_the_stored_width():
    assert RemoteEmbedder(url="http://e:8080/v1", model="BAAI/bge-small-en-v1.5").fingerprint == {
        "name": "remote:BAAI/bge-small-en-v1.5",
        "model": "BAAI/bge-small-en-v1.5",
        "dimensions": 384,
        "normalisation": "l2",
        "max_tokens": None,
    }


def test_a_service_that_answers_too_late_is_unavailable_and_not_waited_for_again_at_once(embedder_service, monkeypatch):
    monkeypatch.setattr(remote_embeddings, "PAUSE_AFTER_FAILURE_SECONDS", 0.5)
    embedder = remote(embedder_service, timeout=0.2)
    embedder_service.delay = 1.0
    started = time.monotonic()
    with pytest.raises(EmbedderUnavailable) as failure:
        embedder.embed_one("slow")
    assert time.monotonic() - started < 0.9
    assert str(failure.value) == "The embedder remote:fake-minilm is unavailable: no answer within 0.2 s."
    # Within the pause the next call fails at once, without reaching the service.
    started = time.monotonic()
    with pytest.raises(EmbedderUnavailable, match=r"no answer within 0.2 s \(not tried again for 0.5 s"):
        embedder.embed_one("again")
    assert time.monotonic() - started < 0.1 and len(embedder_service.requests) == 1
    embedder_service.delay = 0.0
    time.sleep(0.5)
    np.testing.assert_allclose(embedder.embed_one("back"), HashingEmbedder().embed_one("back"), atol=1e-6)


def test_a_service_that_cannot_be_reached_is_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed when the block ends: nothing listens there
    embedder = RemoteEmbedder(url=f"http://127.0.0.1:{port}/v1", model="m", api_key="", timeout=2)
    with pytest.raises(EmbedderUnavailable) as failure:
        embedder.embed_one("hello")
    assert failure.value.reason == "cannot connect" and f"127.0.0.1:{port}/v1/embeddings" in failure.value.detail


def test_vectors_of_another_width_are_refused(embedder_service):
    embedder_service.dimensions = 768
    with pytest.raises(EmbedderUnavailable) as failure:
        remote(embedder_service).embed(TEXTS)
    assert failure.value.reason == "its answer is unusable: 768-dimensional vectors; routerhub stores 384"


def test_vectors_of_another_model_are_refused(embedder_service):
    embedder_service.answer_model = "BAAI/bge-small-en-v1.5"
    with pytest.raises(EmbedderUnavailable) as failure:
        remote(embedder_service).embed_one("hello")
    assert failure.value.reason == (
        "its answer is unusable: it was made by model 'BAAI/bge-small-en-v1.5', not 'fake-minilm'"
    )


@pytest.mark.parametrize(
    "body, what",
    [
        ("<html>Bad gateway</html>", "it is not JSON"),
        ('{"object": "list"}', 'it has no "data" list'),
        ('{"data": [{"index": 0, "embedding": [1.0]}]}', "1 embeddings for 3 texts"),
        ('{"data": [{"index": 0}, {"index": 0}, {"index": 1}]}', "indices [0, 0, 1] for 3 texts"),
        (
            '{"data": [{"embedding": "AAAA"}, {"embedding": []}, {"embedding": []}]}',
            "an embedding is not a list of numbers",
        ),
        (
            '{"data": [{"embedding": ["1"]}, {"embedding": []}, {"embedding": []}]}',
            "an embedding is not a list of numbers",
        ),
    ],
)
def test_answers_that_are_not_one_vector_per_text_are_refused(embedder_service, body, what):
    embedder_service.body = body
    with pytest.raises(EmbedderUnavailable) as failure:
        remote(embedder_service).embed(TEXTS)
    assert failure.value.reason == f"its answer is unusable: {what}"


def test_zero_or_non_finite_vectors_are_refused(embedder_service):
    embedder_service.embed = lambda texts: np.where(np.arange(384) == 0, np.nan, 0.1) * np.ones((len(texts), 1))
    with pytest.raises(EmbedderUnavailable, match="a vector is zero or not finite"):
        remote(embedder_service).embed_one("hello")
    embedder_service.embed = lambda texts: np.zeros((len(texts), 384))
    with pytest.raises(EmbedderUnavailable, match="a vector is zero or not finite"):
        remote(embedder_service).embed_one("hello")


def test_an_error_status_is_reported_without_the_address_to_clients_and_without_the_key_anywhere(embedder_service):
    embedder_service.status, embedder_service.body = 401, '{"error": "bad key sk-embed-secret"}'
    with pytest.raises(EmbedderUnavailable) as failure:
        remote(embedder_service, api_key="sk-embed-secret").embed_one("hello")
    assert str(failure.value) == "The embedder remote:fake-minilm is unavailable: it answered HTTP 401."
    assert (
        failure.value.detail == f"{embedder_service.url}/embeddings answered HTTP 401: " + '{"error": "bad key [key]"}'
    )


def test_an_address_with_credentials_is_shown_without_them():
    assert (
        remote_embeddings.shown_url("https://user:pass@embedder.internal:8443/v1/embeddings?key=x")
        == "https://embedder.internal:8443/v1/embeddings"
    )


def test_an_oversized_answer_is_not_read_to_its_end(embedder_service, monkeypatch):
    monkeypatch.setattr(remote_embeddings, "MAX_ANSWER_BYTES", 1_000)
    with pytest.raises(EmbedderUnavailable, match="its answer is too large"):
        remote(embedder_service).embed(TEXTS)


# --- start-up checks of the settings ---------------------------------------------------------------


def check_ids(settings, **values) -> list[str]:
    from registry.checks import remote_embedder_is_configured

    for name, value in {"ROUTERHUB_EMBEDDER": "remote", **values}.items():
        setattr(settings, name, value)
    return [error.id for error in remote_embedder_is_configured(None)]


def test_remote_settings_are_checked_at_start(settings):
    good = {"ROUTERHUB_EMBEDDER_URL": "http://embedder:8080/v1", "ROUTERHUB_EMBEDDER_MODEL": "m"}
    assert check_ids(settings, **good) == []
    assert check_ids(settings, **{**good, "ROUTERHUB_EMBEDDER_URL": ""}) == ["registry.E004"]
    assert check_ids(settings, **{**good, "ROUTERHUB_EMBEDDER_URL": "file:///etc/passwd"}) == ["registry.E004"]
    assert check_ids(settings, **{**good, "ROUTERHUB_EMBEDDER_MODEL": " "}) == ["registry.E005"]
    assert check_ids(settings, **{**good, "ROUTERHUB_EMBEDDER_MODEL": "m" * 94}) == ["registry.E005"]
    assert check_ids(settings, **{**good, "ROUTERHUB_EMBEDDER_TIMEOUT_SECONDS": 0.0}) == ["registry.E006"]
    settings.ROUTERHUB_EMBEDDER = "hashing"
    from registry.checks import remote_embedder_is_configured

    assert remote_embedder_is_configured(None) == []


def test_an_embedder_whose_packages_are_missing_fails_the_start_up_check_and_says_what_to_install(
    settings, monkeypatch
):
    import importlib.util

    from registry.checks import embedder_packages_are_installed
    from registry.embedders import MiniLMEmbedder

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real_find_spec(name, *a)
    )
    settings.ROUTERHUB_EMBEDDER = "minilm"
    (error,) = embedder_packages_are_installed(None)
    assert error.id == "registry.E003" and "needs torch" in error.msg and "requirements-torch.txt" in error.hint
    with pytest.raises(RuntimeError, match=r"needs torch: pip install -r requirements-torch.txt"):
        MiniLMEmbedder().embed_one("hello")
    settings.ROUTERHUB_EMBEDDER = "minilm-onnx-int8"
    assert embedder_packages_are_installed(None) == []
