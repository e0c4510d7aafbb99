"""One embedding cache for all processes: a prompt is embedded once per deployment."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from registry import embedding_store
from registry.embedders import HashingEmbedder, get_embedder
from registry.models import SharedEmbedding, SharedEmbeddingStats
from routing.caches import reset_all
from routing.services.embeddings import embed_cached
from tests.fixtures.api import ApiClient

PROJECT_DIR = Path(__file__).resolve().parents[3]


@pytest.fixture
def shared_cache_on(settings, monkeypatch):
    settings.ROUTERHUB_SHARED_EMBEDDING_CACHE = "on"
    monkeypatch.setattr(embedding_store, "FLUSH_SECONDS", 3600)  # flushed by the tests themselves


class Counting(HashingEmbedder):
    def __init__(self):
        self.calls = 0

    def _embed_batch(self, texts):
        self.calls += len(texts)
        return super()._embed_batch(texts)


@pytest.mark.django_db
def test_a_text_embedded_in_one_process_is_read_from_the_shared_cache_in_another(shared_cache_on, monkeypatch):
    embedder = Counting()
    monkeypatch.setattr("routing.services.embeddings.get_embedder", lambda: embedder)
    first, source = embed_cached("What is the boiling point of water at sea level?", tenant_id=1)
    assert (source, embedder.calls) == ("", 1)
    assert embed_cached("What is the boiling point of water at sea level?", tenant_id=1)[1] == "memory"
    reset_all()  # what another process sees: nothing in its own memory
    second, source = embed_cached("What is the boiling point of water at sea level?", tenant_id=1)
    assert (source, embedder.calls) == ("shared", 1)
    np.testing.assert_allclose(second, first, rtol=1e-6)
    assert SharedEmbedding.objects.get().embedder == "hashing-test-only"


@pytest.mark.django_db
def test_another_embedder_never_reads_the_rows_of_the_first(shared_cache_on):
    class Other(HashingEmbedder):
        name = "other-test-embedder"

    embedding_store.store(HashingEmbedder(), "same text", HashingEmbedder().embed_one("same text"))
    assert embedding_store.lookup(HashingEmbedder(), "same text") is not None
    assert embedding_store.lookup(Other(), "same text") is None


@pytest.mark.django_db
def test_the_cache_is_bounded_and_drops_the_least_recently_used_first(shared_cache_on, monkeypatch):
    embedder = HashingEmbedder()
    now = timezone.now()
    for i in range(5):
        embedding_store.store(embedder, f"text {i}", embedder.embed_one(f"text {i}"))
        SharedEmbedding.objects.filter(key=embedding_store.key_of(embedder, f"text {i}")).update(
            used_at=now - timedelta(hours=10 - i)
        )
    # A hit on an entry last used long ago refreshes it, so it outlives younger unused ones.
    monkeypatch.setattr(embedding_store, "TOUCH_SECONDS", 60)
    assert embedding_store.lookup(embedder, "text 0") is not None
    assert embedding_store.trim(capacity=3) == 2
    kept = sorted(t for t in (f"text {i}" for i in range(5)) if embedding_store.lookup(embedder, t) is not None)
    assert kept == ["text 0", "text 3", "text 4"]


@pytest.mark.django_db
def test_flush_trims_the_table_to_its_configured_size(shared_cache_on, settings):
    settings.ROUTERHUB_SHARED_EMBEDDING_CACHE_SIZE = 4
    embedder = HashingEmbedder()
    for i in range(6):
        embedding_store.store(embedder, f"question {i}", embedder.embed_one(f"question {i}"))
    embedding_store.count("computed")
    embedding_store.flush()
    assert SharedEmbedding.objects.count() == 4


@pytest.mark.django_db
def test_route_requests_report_where_the_embedding_came_from(fitted, make_tenant, shared_cache_on):
    SharedEmbeddingStats.objects.all().delete()
    embedding_store.flush()  # counts of earlier tests in this process
    SharedEmbeddingStats.objects.all().delete()
    _, key = make_tenant(name="cachetenant")
    api = ApiClient(key)
    prompt = "Which planet has the shortest year in the solar system?"
    sources = []
    for clear in (False, False, True):
        if clear:
            reset_all()
        response = api.route(prompt)
        assert response.status_code == 200
        sources.append(response["Server-Timing"].split('desc="')[1].split('"')[0])
    assert sources == ["computed", "cached", "shared-cache"]

    staff = get_user_model().objects.create_user("ops", password="s3cret-pass", is_staff=True)
    client = ApiClient()
    client.client.force_login(staff)
    body = client.get("/api/v1/health").json()["embeddings"]
    assert body["embedder"]["name"] == get_embedder().name and body["shared_cache_enabled"] is True
    cache = body["cache"]
    assert (cache["lookups"], cache["memory_hits"], cache["shared_hits"], cache["computed"]) == (3, 1, 1, 1)
    assert cache["hit_rate"] == pytest.approx(2 / 3, abs=1e-4) and cache["shared_hit_rate"] == 0.5
    assert cache["entries"] == 1 and cache["capacity"] == 100_000

    # Anyone may ask whether the service is up; only staff see the cache figures.
    assert "embeddings" not in ApiClient().get("/api/v1/health").json()
    assert "embeddings" not in api.get("/api/v1/health").json()


@pytest.mark.django_db(transaction=True)
def test_a_second_real_process_reads_what_the_first_embedded(shared_cache_on):
    text = "Name the process by which plants turn light into chemical energy."
    vector, source = embed_cached(text, tenant_id=1)
    assert source == ""
    child = (
        "import json, django; django.setup()\n"
        "from routing.services.embeddings import embed_cached\n"
        f"vector, source = embed_cached({text!r}, tenant_id=1)\n"
        "other, other_source = embed_cached('a text no process has seen', tenant_id=1)\n"
        "print(json.dumps({'source': source, 'other': other_source, 'vector': vector.tolist()}))\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "routerhub.settings",
        "DATABASE_NAME": connection.settings_dict["NAME"],
        "DATABASE_CONN_MAX_AGE": "0",
        "ROUTERHUB_EMBEDDER": "hashing",
        "ROUTERHUB_SHARED_EMBEDDING_CACHE": "on",
    }
    done = subprocess.run(
        [sys.executable, "-c", child], cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert (answer["source"], answer["other"]) == ("shared", "")
    np.testing.assert_allclose(answer["vector"], vector, rtol=1e-6)
    assert SharedEmbedding.objects.count() == 2
