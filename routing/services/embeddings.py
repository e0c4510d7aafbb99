"""Route-time prompt embeddings, cached at two levels, each kept apart per tenant (services: a miss
stores the embedding in the deployment's shared cache).

First a small in-process LRU cache keyed by a hash of the text (clients often route the same
prompt again: retries, templated prompts, evaluation loops); then the deployment's shared cache
(``registry/embedding_store.py``), so a prompt embedded by one web or worker process is not
embedded again by another. The embedding is most of a route request's time; the rest is well under
a millisecond.

Both levels are scoped by tenant: a hit is much faster than a miss (and the route answer's
Server-Timing says which it was), so an entry shared across tenants would tell one tenant what
text another had just routed.
"""

from __future__ import annotations

import hashlib

import numpy as np
from django.conf import settings

from registry import embedding_store
from registry.embedders import get_embedder
from routing import metrics
from routing.caches import process_cache

# (tenant id, embedder name, hash of the text) → embedding, least recently used dropped first
_cache = process_cache("prompt embeddings", max_entries=lambda: settings.ROUTERHUB_EMBEDDING_CACHE_SIZE)


def embed_cached(text: str, *, tenant_id: int) -> tuple[np.ndarray, str]:
    """(embedding, where it came from: ``"memory"``, ``"shared"`` or ``""`` when computed)."""
    embedder = get_embedder()
    key = (tenant_id, embedder.name, hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest())
    vector = _cache.get(key)
    if vector is not None:
        return vector, _counted("memory")
    scope = f"tenant:{tenant_id}"
    shared = embedding_store.enabled(embedder)
    vector = embedding_store.lookup(embedder, text, scope) if shared else None
    source = "shared" if vector is not None else ""
    if vector is None:
        vector = embedder.embed_one(text)
        if shared:
            embedding_store.store(embedder, text, vector, scope)
    vector.setflags(write=False)  # shared between requests
    _cache.set(key, vector)
    return vector, _counted(source)


def _counted(source: str) -> str:
    """``source``, counted where the health check (``embedding_store.count``) and /metrics read it."""
    embedding_store.count(source or "computed")
    metrics.observe_embedding(source)
    return source
