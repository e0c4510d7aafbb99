"""Shared fixtures. Tests run against real PostgreSQL + pgvector (the embedded server by default)."""

import os

# One BLAS thread per test process, as in the web processes (routerhub/asgi.py): make test runs a
# pytest worker per core, and a BLAS spreading each small product over every core on top of that
# makes the workers' threads wait on each other — on 2 cores test_state_choice's fits took 130 s
# instead of 11 s. The variable reaches BLAS libraries loaded later and the processes tests start;
# threadpoolctl limits those already loaded.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy  # noqa: E402,F401 (loads BLAS, so that the limit below reaches it)
import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from routing.caches import reset_all  # noqa: E402

threadpool_limits(limits=1, user_api="blas")

# Fixtures shared across apps: a fitted slice of MMLU-Pro with tenants and keys (the route API),
# and a synthetic three-subject data set (profiling, workers).
pytest_plugins = [
    "tests.fixtures.api",
    "tests.fixtures.clock",
    "tests.fixtures.dashboard",
    "tests.fixtures.embedder_service",
    "tests.fixtures.gateway",
    "tests.fixtures.subjects",
]


@pytest.fixture(autouse=True)
def cheap_test_embedder(settings):
    """Unit tests use the deterministic hashing embedder; tests of the real model ask for it by name."""
    settings.ROUTERHUB_EMBEDDER = "hashing"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Tests create many users with passwords: a deliberately slow password hash is no test of ours."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def fresh_hnsw_index(db):
    """Rebuild the prompt-embedding HNSW index from the rows this test can see.

    Tests roll back their inserts, and the same vectors are imported again and again: the index
    fills with dead copies (autovacuum clears them in production) that crowd an approximate search.
    """
    from django.db import connection

    def rebuild():
        with connection.cursor() as cursor:
            cursor.execute("REINDEX INDEX registry_prompt_embedding_hnsw")

    return rebuild


@pytest.fixture(autouse=True)
def loopback_upstreams_allowed(settings):
    """The fake OpenAI-compatible servers listen on loopback, which upstream calls may reach only when listed."""
    from tests.processes.workers import TEST_UPSTREAM_HOSTS

    settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS = list(TEST_UPSTREAM_HOSTS)


@pytest.fixture(autouse=True)
def throttle_windows_that_do_not_roll_over(monkeypatch):
    """Rate limits count in windows aligned to the clock (routing/throttling.py): a test that sends
    N + 1 requests must not see the window turn over between them, so in-process counters read a clock
    held in the middle of a minute (and of an hour and a day)."""
    import types

    from routing import throttling

    monkeypatch.setattr(throttling, "time", types.SimpleNamespace(time=lambda: 1_800_000_000.0 + 1_830))


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch):
    """Per-process caches must not carry one test's router, periods, λ or rate counts into the next."""
    from django.core.cache import cache

    from routing.services import budget_policies

    monkeypatch.setattr(budget_policies, "PACING_REFRESH_SECONDS", 0)

    reset_all()
    cache.clear()  # rate-limit counters (routing/throttling.py) live in Django's cache
    yield
    reset_all()
    cache.clear()
