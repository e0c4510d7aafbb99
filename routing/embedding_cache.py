"""A small in-process LRU cache of prompt embeddings, keyed by a hash of the text.

Clients often route the same prompt again (retries, templated prompts, evaluation loops); the
embedding is most of a route request's time, the rest is well under a millisecond.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np
from django.conf import settings

from registry.embedders import get_embedder

_cache: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
_lock = threading.Lock()


def embed_cached(text: str) -> tuple[np.ndarray, bool]:
    """(embedding, whether it came from the cache)."""
    embedder = get_embedder()
    key = (embedder.name, hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest())
    with _lock:
        vector = _cache.get(key)
        if vector is not None:
            _cache.move_to_end(key)
            return vector, True
    vector = embedder.embed_one(text)
    vector.setflags(write=False)  # shared between requests
    capacity = settings.ROUTERHUB_EMBEDDING_CACHE_SIZE
    if capacity > 0:
        with _lock:
            _cache[key] = vector
            while len(_cache) > capacity:
                _cache.popitem(last=False)
    return vector, False


def clear() -> None:
    with _lock:
        _cache.clear()
