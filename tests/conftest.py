"""Shared fixtures. Tests run against real PostgreSQL + pgvector (the embedded server by default)."""

import pytest


@pytest.fixture(autouse=True)
def cheap_test_embedder(settings):
    """Unit tests use the deterministic hashing embedder; tests of the real model ask for it by name."""
    settings.ROUTERHUB_EMBEDDER = "hashing"
