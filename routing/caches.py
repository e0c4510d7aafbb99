"""Process-local caches: the one module that owns them, and the one reset that tests use.

Each web or worker process keeps a few small caches of things that are slow to compute and cheap
to re-check: loaded routers, pacing λs, prompt embeddings, open budget periods — and the budget
leases the process holds (``services/budget_leases.py``). They are created
here with :func:`process_cache`, so that :func:`reset_all` forgets every one of them at once.
Values must never be mutated in place by callers: a cache hands the same object to every thread.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

_MISSING = object()


class ProcessCache:
    """A thread-safe dict, optionally bounded (least recently used entries go first).

    ``lock`` is exposed for compound updates (check, compute, store) that must not run twice
    concurrently, e.g. loading a router.
    """

    def __init__(self, name: str, *, max_entries: int | Callable[[], int] | None = None) -> None:
        self.name = name
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self.lock = threading.RLock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self.lock:
            value = self._entries.get(key, _MISSING)
            if value is _MISSING:
                return default
            self._entries.move_to_end(key)
            return value

    def set(self, key: Hashable, value: Any) -> None:
        capacity = self._max_entries() if callable(self._max_entries) else self._max_entries
        if capacity is not None and capacity <= 0:
            return
        with self.lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while capacity is not None and len(self._entries) > capacity:
                self._entries.popitem(last=False)

    def pop(self, key: Hashable) -> Any:
        """Remove ``key``; its value, or None."""
        with self.lock:
            return self._entries.pop(key, None)

    def values(self) -> list:
        with self.lock:
            return list(self._entries.values())

    def clear(self) -> None:
        with self.lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


_caches: dict[str, ProcessCache] = {}


def process_cache(name: str, *, max_entries: int | Callable[[], int] | None = None) -> ProcessCache:
    """The process-wide cache called ``name`` (created on first use)."""
    cache = _caches.get(name)
    if cache is None:
        cache = _caches.setdefault(name, ProcessCache(name, max_entries=max_entries))
    return cache


def reset_all() -> None:
    """Forget everything every process-local cache holds (tests; a process that must reload)."""
    for cache in _caches.values():
        cache.clear()


class ExpiringCache(ProcessCache):
    """A :class:`ProcessCache` whose entries are forgotten ``seconds()`` after they were stored: for
    rows read on every request that an operator may change (API keys, LLMs, presets). A change made
    through the admin or a service clears every such cache of the process that made it at once
    (``routing/signals.py``, :func:`lookups_forget`); other processes see it when the entry expires,
    so ``seconds()`` is the bound on how long a change can go unseen.

    A read that began before a clear must not store what it read after it (it may be the old row):
    :meth:`set` takes the :attr:`generation` seen before the read and drops the value if it moved.
    """

    def __init__(self, name: str, *, seconds: Callable[[], float], max_entries: int | None = None) -> None:
        super().__init__(name, max_entries=max_entries)
        self._seconds = seconds
        self.generation = 0

    def get(self, key: Hashable, default: Any = None) -> Any:
        entry = super().get(key, _MISSING)
        if entry is _MISSING:
            return default
        expires_at, value = entry
        if time.monotonic() >= expires_at:
            self.pop(key)
            return default
        return value

    def set(self, key: Hashable, value: Any, *, generation: int | None = None) -> None:
        seconds = self._seconds()
        if seconds <= 0:
            return
        with self.lock:
            if generation is not None and generation != self.generation:
                return  # cleared while the value was being read: it may be stale
            super().set(key, (time.monotonic() + seconds, value))

    def clear(self) -> None:
        with self.lock:
            self.generation += 1
            super().clear()


def expiring_cache(name: str, *, seconds: Callable[[], float], max_entries: int | None = None) -> ExpiringCache:
    """The process-wide expiring cache called ``name`` (created on first use)."""
    cache = _caches.get(name)
    if cache is None:
        cache = _caches.setdefault(name, ExpiringCache(name, seconds=seconds, max_entries=max_entries))
    return cache


def lookups_forget() -> None:
    """Forget every expiring lookup of this process (an API key, tenant, LLM or preset changed)."""
    for cache in list(_caches.values()):
        if isinstance(cache, ExpiringCache):
            cache.clear()
