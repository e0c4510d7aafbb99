"""Reads about the route-time embedder: its health and whether a remote one may be served.
Embedding a prompt, with its caches, is ``routing/services/embeddings.py``."""

from __future__ import annotations

import numpy as np
from django.db import DatabaseError

from registry import embedding_store
from registry.embedders import get_embedder
from registry.embedding_files import MIN_SAMPLE_COSINE
from registry.models import Prompt
from registry.remote_embeddings import EmbedderUnavailable
from routing.models import RoutingState

#: Prompts of the active state that a remote embedder embeds again at start.
START_SAMPLE_PROMPTS = 8


def embedding_health() -> dict:
    """The embedder and its caches, as the staff view of ``GET /api/v1/health`` shows them."""
    embedder = get_embedder()
    body = {"embedder": embedder.fingerprint, "shared_cache_enabled": embedding_store.enabled(embedder)}
    try:
        body["cache"] = embedding_store.figures()
    except DatabaseError as exc:
        body["cache"] = {"error": str(exc)}
    return body


def remote_embedder_refusal() -> str | None:
    """Why this process must not serve with the configured embedder service, or None.

    An embedder on another machine can change behind the same settings (another model, revision or
    precision), which would route on vectors the active state was not fitted on. At start a web
    process asks it for vectors: it must answer, with 384-dimensional vectors from the configured
    model, it must be the embedder the active state was fitted with, and on a sample of that state's
    prompts its vectors must agree with the stored ones as an embeddings file's must (cosine ≥ 0.99).
    In-process embedders are code of this version and are not asked.
    """
    embedder = get_embedder()
    if not embedder.remote:
        return None
    try:
        embedder.embed_one("routerhub start-up check")
    except EmbedderUnavailable as exc:
        return f"The embedder service {embedder.name} cannot be used: {exc.detail}."
    state = RoutingState.objects.filter(is_active=True).only("version", "strategy", "embedder", "prompt_set_id").first()
    if state is None:
        return None
    if state.embedder != embedder.name:
        return (
            f"The active routing state v{state.version} ({state.strategy}) was fitted on prompts embedded by "
            f"{state.embedder!r}, but ROUTERHUB_EMBEDDER gives {embedder.name!r}: its vectors would be compared with "
            "another model's. Import the data again with this embedder and fit a router (manage.py "
            "import_routing_data, fit_router), or configure the embedder the state was fitted with."
        )
    sample = list(
        Prompt.objects.filter(prompt_set_id=state.prompt_set_id, embedder=state.embedder, embedding__isnull=False)
        .order_by("id")
        .values_list("text", "embedding")[:START_SAMPLE_PROMPTS]
    )
    if not sample:
        return None
    try:
        fresh = embedder.embed([text for text, _ in sample])
    except EmbedderUnavailable as exc:
        return f"The embedder service {embedder.name} cannot be used: {exc.detail}."
    stored = np.array([vector for _, vector in sample], dtype=np.float32)
    stored /= np.maximum(np.linalg.norm(stored, axis=1, keepdims=True), 1e-12)
    cosines = np.sum(fresh * stored, axis=1)
    if cosines.min() < MIN_SAMPLE_COSINE:
        return (
            f"The embedder service {embedder.name} gives other vectors than those the active routing state "
            f"v{state.version} was fitted on: cosine {cosines.min():.4f} at worst on {len(sample)} of its prompts "
            f"(at least {MIN_SAMPLE_COSINE} needed). It serves another model, revision or precision than its name "
            "says; serve the one the prompts were embedded with, or import the data again with this one and fit a router."
        )
    return None
