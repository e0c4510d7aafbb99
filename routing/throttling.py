"""Request rate limits (429 with ``Retry-After``): per API key, and per client address for failed
authentication — shared by /api/ (``routing/apis/throttling.py``, ``apis/authentication.py``), the
gateway (``routing/gateway/calls.py``) and the password log-in (``routing/views/login.py``).

Counters are fixed windows in Django's cache (``CACHES["default"]``): one atomic ``incr`` per
request, whatever the rate — DRF's own throttles keep a list of every request time in the window and
rewrite it on each request, which costs more the higher the limit. With the default local-memory
cache each web process counts on its own; ``ROUTERHUB_CACHE_URL`` (Redis) makes the limits
service-wide.

Rates are ``"N/period"`` with period ``s``, ``min``, ``h`` or ``day`` (DRF's notation), from the
settings ``ROUTERHUB_THROTTLE_API_KEY`` and ``ROUTERHUB_THROTTLE_FAILED_AUTH``; an empty rate turns a
limit off.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time

from django.conf import settings
from django.core.cache import cache

from registry.endpoints import normalised_ip

PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"600/min"`` → (600, 60); None or "" → None (no limit)."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    try:
        return int(count), PERIOD_SECONDS[period.strip()[:1].lower()]
    except (ValueError, KeyError):
        raise ValueError(f"rate {rate!r} is not N/s, N/min, N/h or N/day") from None


class FixedWindow:
    """At most ``count`` events per ``seconds`` for each identity, in windows aligned to the clock."""

    def __init__(self, scope: str, rate: str | None) -> None:
        self.scope, self.limit = scope, parse_rate(rate)

    def _key(self, ident: str, now: float) -> tuple[str, float]:
        count, seconds = self.limit
        window = math.floor(now / seconds)
        return f"throttle:{self.scope}:{ident}:{window}", (window + 1) * seconds - now

    def hit(self, ident: str) -> float | None:
        """Count one event; the seconds to wait if it is over the limit, else None."""
        if self.limit is None:
            return None
        key, left = self._key(ident, time.time())
        cache.add(key, 0, timeout=math.ceil(left) + 1)
        try:
            used = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=math.ceil(left) + 1)
            used = 1
        return left if used > self.limit[0] else None

    def exceeded(self, ident: str) -> float | None:
        """The seconds to wait if ``ident`` is already over the limit (without counting an event)."""
        if self.limit is None:
            return None
        key, left = self._key(ident, time.time())
        return left if (cache.get(key) or 0) >= self.limit[0] else None


def failed_authentication_window() -> FixedWindow:
    return FixedWindow("failed_auth", settings.ROUTERHUB_THROTTLE_FAILED_AUTH)


def client_address(request) -> str:
    """The client's address: ``REMOTE_ADDR``, unless the connection comes from one of
    ``ROUTERHUB_TRUSTED_PROXIES``; then the nearest address in ``X-Forwarded-For`` that is not a
    trusted proxy (each proxy appends the address it was connected from, so hops left of that one
    are whatever the client wrote). Anyone else's ``X-Forwarded-For`` is ignored: a client that
    reaches the web processes directly could write any address there and escape its lockout.
    """
    remote = request.META.get("REMOTE_ADDR") or ""
    proxies = trusted_proxies()
    if not proxies or not _is_proxy(_ip(remote), proxies):
        return remote
    hops = [_ip(hop) for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop is None:  # a proxy of ours wrote something that is no address: no client to tell apart
            return remote
        if not _is_proxy(hop, proxies):
            return str(hop)
    return str(hops[0]) if hops else remote


def trusted_proxies() -> tuple:
    """``ROUTERHUB_TRUSTED_PROXIES`` as networks (addresses are /32 or /128)."""
    return _networks(tuple(settings.ROUTERHUB_TRUSTED_PROXIES))


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(entry.strip().strip("[]"), strict=False) for entry in entries if entry.strip())


def _ip(text: str):
    try:
        return normalised_ip(text.strip().strip("[]"))
    except ValueError:
        return None


def _is_proxy(ip, proxies: tuple) -> bool:
    return ip is not None and any(ip in network for network in proxies)
