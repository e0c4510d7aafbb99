"""One embedding cache for every process of a deployment, in PostgreSQL (``SharedEmbedding``).

Each web or worker process keeps a small in-memory cache in front of it
(``routing/services/embeddings.py``); on a miss there it asks this table, and only on a miss here does
it run the embedder — so a prompt is embedded once per deployment, not once per process. Rows are
keyed by a hash of the embedder's name and the text (another embedder never reads them), bounded by
``ROUTERHUB_SHARED_EMBEDDING_CACHE_SIZE`` (least recently used deleted first) and counted: every
process adds its hits and misses to one ``SharedEmbeddingStats`` row every few seconds, which the
staff view of ``GET /api/v1/health`` shows.

A failure of the table (database down, migration not run) never fails a request: the embedding is
computed as if the cache were empty, and the failure is logged.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from registry.embedders import Embedder
from registry.models import SharedEmbedding, SharedEmbeddingStats

#: A hit refreshes its row's last use at most this often: eviction needs only the hour, not the second.
TOUCH_SECONDS = 3600.0
#: How often each process adds its hit counts to the shared figures and trims the table.
FLUSH_SECONDS = 10.0

log = logging.getLogger(__name__)


def enabled(embedder: Embedder) -> bool:
    mode = settings.ROUTERHUB_SHARED_EMBEDDING_CACHE
    if mode == "auto":
        return embedder.worth_sharing
    return mode == "on"


def key_of(embedder: Embedder, text: str, scope: str = "") -> bytes:
    """Row key: the embedder, the text and a scope (callers that must not see each other's entries,
    such as tenants, pass different scopes)."""
    return hashlib.blake2b(f"{scope}\0{embedder.name}\0{text}".encode(), digest_size=16).digest()


def lookup(embedder: Embedder, text: str, scope: str = "") -> np.ndarray | None:
    """The shared embedding of ``text``, or None (not there, or the table is unavailable)."""
    key = key_of(embedder, text, scope)
    try:
        with _savepoint_if_in_transaction():
            row = SharedEmbedding.objects.filter(key=key).values_list("embedding", "used_at").first()
            if row is None:
                return None
            vector, used_at = row
            if timezone.now() - used_at > timedelta(seconds=TOUCH_SECONDS):
                SharedEmbedding.objects.filter(key=key).update(used_at=timezone.now())
    except DatabaseError:
        log.exception("shared embedding cache: lookup failed; embedding instead")
        return None
    return np.asarray(vector, dtype=np.float32)


def store(embedder: Embedder, text: str, vector: np.ndarray, scope: str = "") -> None:
    now = timezone.now()
    try:
        with _savepoint_if_in_transaction():
            SharedEmbedding.objects.bulk_create(
                [
                    SharedEmbedding(
                        key=key_of(embedder, text, scope), embedder=embedder.name, embedding=vector, used_at=now
                    )
                ],
                ignore_conflicts=True,  # another process stored the same text meanwhile: same vector
            )
    except DatabaseError:
        log.exception("shared embedding cache: store failed")
        return
    _counters.stored += 1


# --- figures ---------------------------------------------------------------------------------------


@dataclass
class _Counters:
    memory_hits: int = 0
    shared_hits: int = 0
    misses: int = 0
    stored: int = 0  # rows inserted since the last trim
    flushed_at: float = 0.0


_counters = _Counters(flushed_at=time.monotonic())
_lock = threading.Lock()


def count(source: str) -> None:
    """Count one route-time embedding by where it came from: ``memory``, ``shared`` or ``computed``."""
    with _lock:
        if source == "memory":
            _counters.memory_hits += 1
        elif source == "shared":
            _counters.shared_hits += 1
        else:
            _counters.misses += 1
        due = time.monotonic() - _counters.flushed_at >= FLUSH_SECONDS
    if due:
        flush()


def flush() -> None:
    """Add this process's counts to the shared figures and trim the table if it grew past its bound."""
    with _lock:
        memory_hits, shared_hits, misses, stored = (
            _counters.memory_hits,
            _counters.shared_hits,
            _counters.misses,
            _counters.stored,
        )
        _counters.memory_hits = _counters.shared_hits = _counters.misses = _counters.stored = 0
        _counters.flushed_at = time.monotonic()
    try:
        with _savepoint_if_in_transaction():
            if memory_hits or shared_hits or misses:
                updated = SharedEmbeddingStats.objects.filter(id=1).update(
                    memory_hits=F("memory_hits") + memory_hits,
                    shared_hits=F("shared_hits") + shared_hits,
                    misses=F("misses") + misses,
                )
                if not updated:
                    SharedEmbeddingStats.objects.get_or_create(id=1)
                    SharedEmbeddingStats.objects.filter(id=1).update(
                        memory_hits=F("memory_hits") + memory_hits,
                        shared_hits=F("shared_hits") + shared_hits,
                        misses=F("misses") + misses,
                    )
            if stored:
                trim()
    except DatabaseError:
        log.exception("shared embedding cache: could not record figures")


def trim(capacity: int | None = None) -> int:
    """Delete the least recently used rows beyond ``capacity``; returns how many went."""
    capacity = settings.ROUTERHUB_SHARED_EMBEDDING_CACHE_SIZE if capacity is None else capacity
    excess = SharedEmbedding.objects.count() - capacity
    if excess <= 0:
        return 0
    with connection.cursor() as cursor:
        table = SharedEmbedding._meta.db_table
        cursor.execute(
            f"DELETE FROM {table} WHERE key IN (SELECT key FROM {table} ORDER BY used_at, key LIMIT %s)", [excess]
        )
        return cursor.rowcount


def figures() -> dict:
    """The deployment's figures (this process's unflushed counts included)."""
    flush()
    stats = SharedEmbeddingStats.objects.filter(id=1).first() or SharedEmbeddingStats(id=1, since=None)
    total = stats.memory_hits + stats.shared_hits + stats.misses
    behind_memory = stats.shared_hits + stats.misses
    return {
        "entries": SharedEmbedding.objects.count(),
        "capacity": settings.ROUTERHUB_SHARED_EMBEDDING_CACHE_SIZE,
        "lookups": total,
        "memory_hits": stats.memory_hits,
        "shared_hits": stats.shared_hits,
        "computed": stats.misses,
        # Share of route-time embeddings that needed no embedder run, and of those the in-memory
        # caches missed that the shared table answered.
        "hit_rate": round((stats.memory_hits + stats.shared_hits) / total, 4) if total else None,
        "shared_hit_rate": round(stats.shared_hits / behind_memory, 4) if behind_memory else None,
        "since": stats.since.isoformat() if stats.since else None,
    }


def _savepoint_if_in_transaction():
    # Inside a caller's transaction a failed statement would poison it: give ours a savepoint.
    if connection.in_atomic_block:
        return transaction.atomic()
    from contextlib import nullcontext

    return nullcontext()
