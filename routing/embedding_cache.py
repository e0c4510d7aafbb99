"""Route-time prompt embeddings, cached at two levels.

First a small in-process LRU cache keyed by a hash of the text (clients often route the same
prompt again: retries, templated prompts, evaluation loops); then the deployment's shared cache
(``registry/embedding_store.py``), so a prompt embedded by one web or worker process is not
embedded again by another. The embedding is most of a route request's time; the rest is well under
a millisecond.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np
from django.conf import settings

from registry import embedding_store
from registry.embedders import get_embedder

_cache: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
_lock = threading.Lock()


def embed_cached(text: str) -> tuple[np.ndarray, str]:
    """(embedding, where it came from: ``"memory"``, ``"shared"`` or ``""`` when computed)."""
    embedder = get_embedder()
    key = (embedder.name, hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest())
    with _lock:
        vector = _cache.get(key)
        if vector is not None:
            _cache.move_to_end(key)
    if vector is not None:
        embedding_store.count("memory")
        return vector, "memory"
    shared = embedding_store.enabled(embedder)
    vector = embedding_store.lookup(embedder, text) if shared else None
    source = "shared" if vector is not None else ""
    if vector is None:
        vector = embedder.embed_one(text)
        if shared:
            embedding_store.store(embedder, text, vector)
    embedding_store.count(source or "computed")
    vector.setflags(write=False)  # shared between requests
    capacity = settings.ROUTERHUB_EMBEDDING_CACHE_SIZE
    if capacity > 0:
        with _lock:
            _cache[key] = vector
            while len(_cache) > capacity:
                _cache.popitem(last=False)
    return vector, source


def clear() -> None:
    with _lock:
        _cache.clear()


async def aembed_cached(text: str) -> tuple[np.ndarray, str]:
    """``embed_cached`` for async views: the embedding runs in a worker thread, so the event loop
    keeps serving other requests of the process meanwhile (ONNX Runtime and PyTorch release the GIL
    while they compute)."""
    from asgiref.sync import sync_to_async

    return await sync_to_async(embed_cached, thread_sensitive=False)(text)
