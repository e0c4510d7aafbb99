"""Pooled HTTP clients for upstream calls, and what every caller needs to interpret an answer.

- One ``httpx.Client`` per process (profiling threads share it) and a few ``httpx.AsyncClient``s per
  event loop (the gateway), used in turn: connections are kept alive and reused per upstream.
- Separate connect and read timeouts (``ROUTERHUB_UPSTREAM_CONNECT_TIMEOUT_SECONDS``,
  ``ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS``): a dead host fails in seconds, a slow LLM may think.
- Redirects are never followed, only http/https is spoken, and every connection goes to an address
  that ``addresses.py`` checked (the request's URL is pinned to that IP; Host and TLS SNI keep the
  name, so certificates are still verified against it).
- Failures are sorted by what the caller should do: try again or elsewhere (:data:`TRANSIENT_STATUSES`,
  timeouts, connection errors), fix the configuration (401/403/404, refused address, missing key),
  or accept that this one request was refused (other 4xx).
- What an upstream sends back is truncated and stripped of the request's credentials before it is
  stored or shown to staff (:func:`redact`): a hostile endpoint may echo the Authorization header.
  What a tenant may see of it is less again (:func:`public_text`): no addresses, no variable names.
- An upstream decides how much it sends and for how long; routerhub decides how much it reads
  (:data:`MAX_ANSWER_BYTES`, :func:`aread_bounded`) and until when (``ROUTERHUB_UPSTREAM_DEADLINE_SECONDS``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import re
import threading
import time
import weakref
from dataclasses import dataclass

import httpx
from django.conf import settings

from routing.upstream.addresses import aresolve_checked, check_scheme, resolve_checked

TRANSIENT_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
CONFIGURATION_STATUSES = frozenset({401, 403, 404})
# The gateway tries the next LLM on these (and on 5xx); any other 4xx is the request's own fault.
FALLBACK_STATUSES = frozenset({408, 429})
# A proxy in front of the LLM gave up waiting for it: the LLM may still have done the work.
GATEWAY_TIMEOUT_STATUSES = frozenset({504, 524})
REDACTED = "[redacted]"
# The most of one answer routerhub reads: a JSON body, or all the events of a stream together. What
# a provider bills is bounded by max_tokens; an answer this large is an upstream that does not stop.
MAX_ANSWER_BYTES = 32 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024  # of an error answer: enough for any message, never a whole page


# Answers are asked for uncompressed, so that what is read is what is counted (a small compressed
# body can unpack to gigabytes); one compressed anyway is not read.
PLAIN_ANSWERS = {"Accept-Encoding": "identity"}
#: Characters of an upstream's (error) body kept when it is stored, logged or shown to staff.
BODY_CHARS = 500
#: Connection pools per event loop for the gateway's upstream calls, used in turn (``async_client``).
POOLS = 8


class BadAnswer(Exception):
    """An upstream's answer routerhub does not read on: compressed though it was not asked to be."""

    outcome = "bad_answer"  # the attempt's outcome, as recorded


class AnswerTooLarge(BadAnswer):
    """An upstream sent more than routerhub reads of one answer (or of one streamed event)."""

    outcome = "too_large"

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} larger than {limit / 2**20:g} MiB")


def fallback_worthy(status: int) -> bool:
    return status in FALLBACK_STATUSES or status >= 500


def transient(status: int) -> bool:
    return status in TRANSIENT_STATUSES or status >= 500


@dataclass(frozen=True)
class Timeouts:
    connect: float
    read: float

    @classmethod
    def from_settings(cls, *, read: float | None = None) -> Timeouts:
        return cls(
            connect=settings.ROUTERHUB_UPSTREAM_CONNECT_TIMEOUT_SECONDS,
            read=read if read is not None else settings.ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS,
        )

    def httpx(self) -> httpx.Timeout:
        # write: sending a large prompt; pool: waiting for a free connection of the process's pool
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.read, pool=self.connect)


def chat_completions_url(api_base: str) -> str:
    return api_base.rstrip("/") + "/chat/completions"


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def redact(text: str, *secrets: str | None, limit: int | None = None) -> str:
    """``text`` without any of ``secrets`` and cut to ``limit`` characters (default
    :data:`BODY_CHARS`): what may be logged, stored or shown to staff."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    limit = BODY_CHARS if limit is None else limit
    return text if len(text) <= limit else text[:limit] + "…"


_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\](?::\d{1,5})?|(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_VARIABLE = re.compile(r"\bROUTERHUB_[A-Z0-9_]*")


def public_text(text: str, *secrets: str | None, hosts: tuple[str, ...] = (), limit: int = 300) -> str:
    """What a tenant may read of an upstream's words (an error message): no secrets, no IP address,
    none of ``hosts`` (the endpoint's own name), no ``ROUTERHUB_`` variable name, one line, short."""
    text = redact(" ".join(text.split()), *secrets, limit=limit)
    for host in hosts:
        if host:
            text = text.replace(host, "[host]")
    text = _IPV6.sub(_masked_ipv6, _IPV4.sub("[address]", text))
    return _VARIABLE.sub("[setting]", text)


def _masked_ipv6(match: re.Match) -> str:
    """An IPv6 address (bracketed, with a port, or bare) as ``[address]``; anything else that looks
    like one (a time of day) as it was."""
    found = match.group(0)
    try:
        ipaddress.IPv6Address(found.lstrip("[").split("]")[0])
    except ValueError:
        return found
    return "[address]"


def plain(response: httpx.Response) -> bool:
    """The answer is not compressed (it was asked for as it is: :data:`PLAIN_ANSWERS`)."""
    return response.headers.get("content-encoding", "identity").strip().lower() in ("", "identity")


async def aread_bounded(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed ``response``; :class:`AnswerTooLarge` as soon as it passes ``limit`` bytes
    (nothing more is read: the caller closes the response), :class:`BadAnswer` if it is compressed."""
    if not plain(response):
        raise BadAnswer("a compressed answer, which was not asked for")
    chunks, size = [], 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge("an answer", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def read_bounded(response: httpx.Response, limit: int, *, deadline: float | None = None) -> bytes:
    """:func:`aread_bounded` for the blocking client; past ``deadline`` (``time.monotonic()``) the read
    stops with ``httpx.ReadTimeout`` — checked at each chunk, so at most one read timeout late."""
    if not plain(response):
        raise BadAnswer("a compressed answer, which was not asked for")
    chunks, size = [], 0
    for chunk in response.iter_raw():
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge("an answer", limit)
        if deadline is not None and time.monotonic() > deadline:
            raise httpx.ReadTimeout("the answer did not end before the call's deadline")
        chunks.append(chunk)
    return b"".join(chunks)


# --- transports: check the address, then connect to exactly that address ------------------------


def _pinned(request: httpx.Request, ip: str) -> httpx.Request:
    host = request.url.host
    if host == ip:
        return request
    if request.url.scheme == "https":
        request.extensions = {**request.extensions, "sni_hostname": host}
    request.url = request.url.copy_with(host=ip)  # the Host header was set from the name already
    return request


class GuardedTransport(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        check_scheme(request.url.scheme)
        ip = resolve_checked(request.url.host, request.url.port or _default_port(request.url.scheme))
        return super().handle_request(_pinned(request, ip))


class AsyncGuardedTransport(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        check_scheme(request.url.scheme)
        ip = await aresolve_checked(request.url.host, request.url.port or _default_port(request.url.scheme))
        return await super().handle_async_request(_pinned(request, ip))


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _limits(pools: int = 1) -> httpx.Limits:
    """One pool's share of the process's connections (``pools`` pools share them)."""
    connections = max(1, -(-settings.ROUTERHUB_UPSTREAM_MAX_CONNECTIONS // pools))
    return httpx.Limits(
        max_connections=connections,
        max_keepalive_connections=min(max(1, 200 // pools), connections),
        keepalive_expiry=30.0,
    )


_sync_lock = threading.Lock()
_sync_client: httpx.Client | None = None
_async_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop → (its clients, a cycle of them)


def sync_client() -> httpx.Client:
    """The process's pooled client for blocking code (safe to share between threads)."""
    global _sync_client
    with _sync_lock:
        if _sync_client is None:
            _sync_client = httpx.Client(
                transport=GuardedTransport(limits=_limits(), retries=0),
                follow_redirects=False,
                timeout=Timeouts.from_settings().httpx(),
                headers=PLAIN_ANSWERS,
                trust_env=False,  # no proxy or .netrc taken from the environment
            )
        return _sync_client


def async_client() -> httpx.AsyncClient:
    """One of the running event loop's pooled clients (connections belong to one loop), in turn.

    Several small pools rather than one large one: httpcore checks every connection of a pool for
    expiry on each request and each release, so with one pool the gateway's CPU per call grew with
    the number of calls in flight (a profile at 50 concurrent calls found half of the web process's
    CPU in that scan). :data:`POOLS` pools share ``ROUTERHUB_UPSTREAM_MAX_CONNECTIONS``.
    """
    loop = asyncio.get_running_loop()
    ring = _async_clients.get(loop)
    if ring is None:
        pools = POOLS
        limits = _limits(pools)
        clients = [
            httpx.AsyncClient(
                transport=AsyncGuardedTransport(limits=limits, retries=0),
                follow_redirects=False,
                timeout=Timeouts.from_settings().httpx(),
                headers=PLAIN_ANSWERS,
                trust_env=False,
            )
            for _ in range(pools)
        ]
        ring = _async_clients[loop] = (clients, itertools.cycle(clients))
    return next(ring[1])
