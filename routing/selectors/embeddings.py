"""A small in-process LRU cache of prompt embeddings, keyed by a hash of the text and by tenant.

Clients often route the same prompt again (retries, templated prompts, evaluation loops); the
embedding is most of a route request's time, the rest is well under a millisecond. Entries are
kept apart per tenant: a hit is much faster than a miss (and the route answer's Server-Timing
says which it was), so a shared entry would tell one tenant what text another had just routed.
"""

from __future__ import annotations

import hashlib

import numpy as np
from django.conf import settings

from registry.embedders import get_embedder
from routing.caches import process_cache

# (tenant id, embedder name, hash of the text) → embedding, least recently used dropped first
_cache = process_cache("prompt embeddings", max_entries=lambda: settings.ROUTERHUB_EMBEDDING_CACHE_SIZE)


def embed_cached(text: str, *, tenant_id: int) -> tuple[np.ndarray, bool]:
    """(embedding, whether it came from ``tenant_id``'s part of the cache)."""
    embedder = get_embedder()
    key = (tenant_id, embedder.name, hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest())
    vector = _cache.get(key)
    if vector is not None:
        return vector, True
    vector = embedder.embed_one(text)
    vector.setflags(write=False)  # shared between requests
    _cache.set(key, vector)
    return vector, False
