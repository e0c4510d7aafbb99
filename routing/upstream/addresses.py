"""Which hosts an upstream call may reach, checked at every call, after DNS resolution.

``registry/endpoints.py`` states the rules. Here they are applied to the addresses a host resolves
to *now*, and the connection is then made to the address that was checked (the transports of
``http.py`` pin it), so a DNS answer that changes between the check and the connection (DNS
rebinding) cannot lead a call to a refused address. Resolutions are cached briefly per process.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass

from django.conf import settings

from registry.endpoints import always_refused, carried_ipv4, is_public, literal_ip, normalised_ip
from routing.caches import process_cache

RESOLVE_CACHE_SECONDS = 30.0

# (host, port) → (checked IP, expiry on the monotonic clock)
_resolved = process_cache("upstream addresses", max_entries=1024)


class UpstreamRefused(Exception):
    """The URL or address may not be called (scheme, link-local/metadata, or an unlisted private host)."""


@dataclass(frozen=True)
class AllowedHosts:
    """``ROUTERHUB_UPSTREAM_ALLOWED_HOSTS``: host names, IP addresses and networks that may be private."""

    names: frozenset[str]
    networks: tuple

    @classmethod
    def from_settings(cls) -> AllowedHosts:
        names, networks = set(), []
        for entry in settings.ROUTERHUB_UPSTREAM_ALLOWED_HOSTS:
            entry = entry.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry)
        return cls(frozenset(names), tuple(networks))

    def allows(self, host: str, ip) -> bool:
        """Listed by name, or by a network holding the address or the IPv4 address it carries (a
        listed 10.0.0.0/8 also admits the NAT64 address of 10.1.2.3)."""
        carried = carried_ipv4(ip)
        return host.lower() in self.names or any(
            ip in network or (carried is not None and carried in network) for network in self.networks
        )


def check_address(host: str, address: str, allowed: AllowedHosts | None = None) -> str:
    """``address`` (an IP ``host`` resolved to) if it may be called; raises :class:`UpstreamRefused`.

    An IPv6 address that carries an IPv4 address is judged by that address (``registry/endpoints.py``)
    and connected to as it is."""
    ip = normalised_ip(address)
    carried = carried_ipv4(ip)
    shown = f"{ip} (which leads to {carried})" if carried is not None else str(ip)
    if always_refused(ip):
        raise UpstreamRefused(f"{host} resolves to {shown}, a link-local or cloud-metadata address: never called")
    if is_public(ip):
        return str(ip)
    if (allowed or AllowedHosts.from_settings()).allows(host, ip):
        return str(ip)
    raise UpstreamRefused(
        f"{host} resolves to {shown}, a private, loopback or reserved address; list it in "
        "ROUTERHUB_UPSTREAM_ALLOWED_HOSTS to allow calls to it"
    )


def check_scheme(scheme: str) -> None:
    if scheme not in ("http", "https"):
        raise UpstreamRefused(f"only http and https upstreams can be called, not {scheme!r}")


def _pick(host: str, addresses: list[str]) -> str:
    """The first resolved address, provided that every one of them may be called."""
    if not addresses:
        raise UpstreamRefused(f"{host} does not resolve to any address")
    allowed = AllowedHosts.from_settings()
    checked = [check_address(host, address, allowed) for address in addresses]
    return checked[0]


def _known(host: str, port: int) -> str | None:
    """The IP for ``host`` without a DNS lookup — a literal address, or one resolved lately — or None."""
    ip = literal_ip(host)
    if ip is not None:
        return _pick(host, [str(ip)])
    hit = _resolved.get((host, port))
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    return None


def _chosen(host: str, port: int, infos: list) -> str:
    """The IP picked from a DNS lookup's answers (``getaddrinfo``), remembered for a while."""
    chosen = _pick(host, [info[4][0] for info in infos])
    _resolved.set((host, port), (chosen, time.monotonic() + RESOLVE_CACHE_SECONDS))
    return chosen


def resolve_checked(host: str, port: int) -> str:
    """The IP to connect to for ``host`` (blocking DNS lookup; see :func:`aresolve_checked`)."""
    known = _known(host, port)
    if known is not None:
        return known
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc}") from exc
    return _chosen(host, port, infos)


async def aresolve_checked(host: str, port: int) -> str:
    """:func:`resolve_checked` without blocking the event loop."""
    known = _known(host, port)
    if known is not None:
        return known
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc}") from exc
    return _chosen(host, port, infos)
