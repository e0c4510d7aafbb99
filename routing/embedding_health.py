"""The embedder and its caches, as the staff view of ``GET /api/v1/health`` shows them."""

from __future__ import annotations

from django.db import DatabaseError

from registry import embedding_store
from registry.embedders import get_embedder


def embedding_health() -> dict:
    embedder = get_embedder()
    body = {"embedder": embedder.fingerprint, "shared_cache_enabled": embedding_store.enabled(embedder)}
    try:
        body["cache"] = embedding_store.figures()
    except DatabaseError as exc:
        body["cache"] = {"error": str(exc)}
    return body
