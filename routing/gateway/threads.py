"""Database work and embeddings of the gateway, and the synchronous views of calls made with an API
key (``routerhub/handlers.py``), run here, never on the event loop.

A fixed pool per process (``ROUTERHUB_GATEWAY_THREADS``) for what a call waits for, and one writer
thread for what is written after it (:func:`in_background`). Each thread keeps its own database
connection between jobs (Django's connections are per thread), so a call pays no connection set-up.
That holds with the web processes' connection pool (``ROUTERHUB_DB_POOL``) too: a gateway thread takes
a connection from the pool once and keeps it (the threads are few and fixed, so they hold at most
``ROUTERHUB_GATEWAY_THREADS`` + 1 of the pool's connections per process). Handing it back after every job
would cost two pool check-outs per call, each with the pool's health-check query — a round trip, and
under load a wait of its own (benchmarks/results/measurements.md, *Gateway overhead*). A connection
that failed is checked and, if broken, closed: the next job takes a fresh one from the pool.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from django.conf import settings
from django.db import connections

T = TypeVar("T")
_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_writer: ThreadPoolExecutor | None = None
_shadow: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(settings.ROUTERHUB_GATEWAY_THREADS, thread_name_prefix="gateway")
        return _executor


def writer() -> ThreadPoolExecutor:
    """One thread: what is handed to it runs in that order, and never holds up the pool's calls."""
    global _writer
    with _lock:
        if _writer is None:
            _writer = ThreadPoolExecutor(1, thread_name_prefix="gateway-writer")
        return _writer


def shadow() -> ThreadPoolExecutor:
    """One thread for shadow evaluation's offers (``services/shadow.py``): work no call waits for, kept
    off the writer thread so that it never delays a call's metering."""
    global _shadow
    with _lock:
        if _shadow is None:
            _shadow = ThreadPoolExecutor(1, thread_name_prefix="gateway-shadow")
        return _shadow


def off_path(function: Callable[..., object], /, *args, **kwargs) -> Future:
    """Run ``function`` on the shadow thread, without waiting."""
    return shadow().submit(_job, function, *args, **kwargs)


def _job(function: Callable[..., T], /, *args, **kwargs) -> T:
    try:
        return function(*args, **kwargs)
    finally:
        for connection in connections.all(initialized_only=True):
            if connection.settings_dict.get("OPTIONS", {}).get("pool"):
                if connection.errors_occurred:
                    if connection.is_usable():
                        connection.errors_occurred = False
                    else:
                        connection.close()  # broken: back to the pool, which discards it
            elif connection.settings_dict["CONN_MAX_AGE"] == 0:
                connection.close()  # as Django does after a request (the tests' live servers)
            elif connection.errors_occurred:
                connection.close_if_unusable_or_obsolete()  # a broken connection is not reused


async def in_thread(function: Callable[..., T], /, *args, **kwargs) -> T:
    """``function(*args, **kwargs)`` in the gateway's pool, awaited, in a copy of the caller's context
    (as ``sync_to_async`` does: the script prefix and the active language are context variables)."""
    job = partial(contextvars.copy_context().run, _job, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(executor(), job)


# How long a write waits after it was handed over before the writer starts on it (no wait when it has
# waited that long in the queue already). A write handed over just before the call goes upstream, or
# before its answer goes out, would otherwise take the GIL from the event loop at that moment (what the
# delay saves is measured in benchmarks/results/plain_code.md).
WRITE_DELAY_SECONDS = 0.005


def in_background(function: Callable[..., object], /, *args, **kwargs) -> Future:
    """Run ``function`` on the writer thread without waiting, after everything handed to it before:
    writes that come after a call (its decision, its metering, a cancelled request's clean-up, which
    must outlive the request) — in order, so a call's metering always finds its decision written."""
    return writer().submit(_delayed_job, time.monotonic() + WRITE_DELAY_SECONDS, function, *args, **kwargs)


def _delayed_job(not_before: float, function: Callable[..., T], /, *args, **kwargs) -> T:
    wait = not_before - time.monotonic()
    if wait > 0:
        time.sleep(wait)  # releases the GIL
    return _job(function, *args, **kwargs)
