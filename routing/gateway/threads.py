"""Database work and embeddings of the gateway run here, never on the event loop.

A fixed pool per process (``ROUTERHUB_GATEWAY_THREADS``): each thread keeps its own database
connection between jobs (Django's connections are per thread), so a call pays no connection set-up —
or, with the web processes' connection pool (``ROUTERHUB_DB_POOL``), hands it back after each job.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from django.conf import settings
from django.db import connections

T = TypeVar("T")
_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(settings.ROUTERHUB_GATEWAY_THREADS, thread_name_prefix="gateway")
        return _executor


def _job(function: Callable[..., T], /, *args, **kwargs) -> T:
    try:
        return function(*args, **kwargs)
    finally:
        for connection in connections.all(initialized_only=True):
            if connection.settings_dict.get("OPTIONS", {}).get("pool") or connection.settings_dict["CONN_MAX_AGE"] == 0:
                connection.close()  # back to the pool (or closed, as Django does after a request)
            elif connection.errors_occurred:
                connection.close_if_unusable_or_obsolete()  # a broken connection is not reused


async def in_thread(function: Callable[..., T], /, *args, **kwargs) -> T:
    """``function(*args, **kwargs)`` in the gateway's pool, awaited."""
    return await asyncio.get_running_loop().run_in_executor(executor(), partial(_job, function, *args, **kwargs))


def in_background(function: Callable[..., object], /, *args, **kwargs) -> Future:
    """Run ``function`` in the pool without waiting (a cancelled request's clean-up must outlive it)."""
    return executor().submit(_job, function, *args, **kwargs)
