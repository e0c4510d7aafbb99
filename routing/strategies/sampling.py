"""Choosing a validation set from logged prompts: near-duplicates out, then a sample stratified by cluster.

Both are pure numpy on unit-length embeddings (``services/validation_sets.py`` feeds them).

*Near-duplicates.* Traffic repeats itself — retries, templated prompts with one word changed — and
a validation set that holds the same question five times measures an LLM on it five times. Prompts
are visited in the order given (the caller shuffles them with a seed, so no period of the log is
favoured) and a prompt is kept only when its cosine similarity to every prompt kept before it is
below ``threshold``. This is exact greedy deduplication, computed block by block: a block of
candidates is compared with all kept prompts in one matrix product, then with each other.

*Stratification.* UniRoute represents an LLM by its error per cluster of the routing state
(METHODS.md), so every cluster the traffic reaches needs validation prompts, small ones included.
:func:`stratified_allocation` first gives each of the K non-empty clusters
``min(its size, ⌈N / 4K⌉)`` prompts — a quarter of the N spread evenly, so a rare cluster's error
rests on more than one or two prompts — and the rest in proportion to the cluster's share of the
traffic (largest remainders), never more than a cluster holds.
"""

from __future__ import annotations

import math

import numpy as np

BLOCK = 512
#: The share of the set spread evenly over the clusters the traffic reaches (the rest follows traffic).
EVEN_SHARE = 0.25


def near_duplicate_free(embeddings: np.ndarray, threshold: float, *, block: int = BLOCK) -> np.ndarray:
    """Indices (ascending) of the rows kept: each row's cosine to every earlier kept row is below ``threshold``.

    ``embeddings``: [n, d], unit length (cosine = dot product).
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    n = len(embeddings)
    kept: list[int] = []
    kept_vectors = np.zeros((0, embeddings.shape[1] if embeddings.ndim == 2 else 0), dtype=np.float32)
    for start in range(0, n, block):
        rows = embeddings[start : start + block]
        if len(kept_vectors):
            close_to_kept = (rows @ kept_vectors.T).max(axis=1) >= threshold
        else:
            close_to_kept = np.zeros(len(rows), dtype=bool)
        within = rows @ rows.T
        chosen: list[int] = []
        for i in range(len(rows)):
            if close_to_kept[i]:
                continue
            if chosen and within[i, chosen].max() >= threshold:
                continue
            chosen.append(i)
        kept.extend(start + i for i in chosen)
        kept_vectors = np.concatenate([kept_vectors, rows[chosen]]) if chosen else kept_vectors
    return np.asarray(kept, dtype=np.int64)


def stratified_allocation(sizes: np.ndarray, total: int) -> np.ndarray:
    """How many prompts to draw from each cluster: ``total`` in all (or every prompt, when fewer).

    Each non-empty cluster first gets ``min(size, ⌈EVEN_SHARE · total / K⌉)`` (K: the non-empty
    clusters), then the rest goes by largest remainder in proportion to the sizes, capped by what
    each cluster holds; what a full cluster cannot take goes to the others.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if total >= sizes.sum():
        return sizes.copy()
    reached = np.flatnonzero(sizes > 0)
    allocation = np.zeros_like(sizes)
    if total <= 0 or not len(reached):
        return allocation
    floor = math.ceil(EVEN_SHARE * total / len(reached))
    if total < len(reached):  # fewer prompts than clusters: one each from the largest
        largest = reached[np.argsort(-sizes[reached], kind="stable")][:total]
        allocation[largest] = 1
        return allocation
    allocation[reached] = np.minimum(sizes[reached], floor)
    while allocation.sum() > total:  # the floor overshot (tiny totals): take back from the largest shares
        allocation[int(np.argmax(allocation))] -= 1
    left = total - int(allocation.sum())
    while left > 0:
        room = sizes - allocation
        open_clusters = np.flatnonzero(room > 0)
        if not len(open_clusters):
            break
        share = sizes[open_clusters] / sizes[open_clusters].sum() * left
        whole = np.minimum(np.floor(share).astype(np.int64), room[open_clusters])
        allocation[open_clusters] += whole
        left -= int(whole.sum())
        if left <= 0:
            break
        remainders = share - np.floor(share)
        order = open_clusters[np.argsort(-remainders, kind="stable")]
        for k in order:
            if left == 0:
                break
            if allocation[k] < sizes[k]:
                allocation[k] += 1
                left -= 1
    return allocation


def stratified_sample(clusters: np.ndarray, total: int, *, seed: int = 0) -> np.ndarray:
    """Indices (ascending) of ``total`` rows drawn per :func:`stratified_allocation` over ``clusters`` (one label a row)."""
    clusters = np.asarray(clusters, dtype=np.int64)
    if not len(clusters):
        return np.zeros(0, dtype=np.int64)
    sizes = np.bincount(clusters)
    allocation = stratified_allocation(sizes, total)
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(clusters == k), size=int(n), replace=False) for k, n in enumerate(allocation) if n > 0
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
