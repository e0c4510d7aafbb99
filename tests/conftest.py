"""Shared fixtures. Tests run against real PostgreSQL + pgvector (the embedded server by default)."""

import pytest


@pytest.fixture(autouse=True)
def cheap_test_embedder(settings):
    """Unit tests use the deterministic hashing embedder; tests of the real model ask for it by name."""
    settings.ROUTERHUB_EMBEDDER = "hashing"


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
