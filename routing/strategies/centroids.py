"""Spherical K-means centroids: what UniRoute K-means assigns prompts by, and what LearnedMap and the
per-LLM fine maps (``smoothing.py``) start from."""

from __future__ import annotations

import hashlib

import numpy as np
from sklearn.cluster import KMeans

from routing.caches import process_cache


def spherical_centroids(embeddings: np.ndarray, n_clusters: int, *, n_init: int, random_state) -> np.ndarray:
    """K-means centroids of unit vectors, re-normalised so nearest = most cosine-similar (as pgvector's cosine index).

    The last few results are remembered: K-means with a fixed ``random_state`` is deterministic, and a
    tuning grid fits the same prompts with the same K once for every value of another hyper-parameter
    (LearnedMap's and ``relative_maps``' l2), so without the cache K-means on identical input is a
    large part of ``relative_maps``' fit (benchmarks/results/measurements.md). The answer is the same array either way (a copy of it)."""
    n_clusters = min(int(n_clusters), len(embeddings))
    key = None
    if isinstance(random_state, (int, np.integer)):
        data = np.ascontiguousarray(embeddings)
        digest = hashlib.blake2b(data.tobytes(), digest_size=16).digest()
        key = (digest, data.shape, data.dtype.str, n_clusters, int(n_init), int(random_state))
        remembered = _recent.get(key)
        if remembered is not None:
            return remembered.copy()
    model = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=random_state).fit(embeddings)
    centroids = model.cluster_centers_
    centroids = (centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    if key is not None:
        _recent.set(key, centroids.copy())
    return centroids


# a grid's cluster counts × folds; each entry is K × 384 floats
_recent = process_cache("k-means centroids", max_entries=32)
