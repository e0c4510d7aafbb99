"""Rules for an LLM's upstream endpoint: which URLs and addresses may be called, where its key may come from.

Anyone who can edit an LLM chooses where routerhub sends requests, with which credentials. So:

- ``api_base`` is an ``http``/``https`` URL without user:password, and the addresses its host resolves
  to are checked at every call (``routing/upstream/addresses.py``): link-local and cloud-metadata
  addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254) are always refused; private, loopback and other
  non-public addresses only when ``ROUTERHUB_UPSTREAM_ALLOWED_HOSTS`` lists them. An IPv6 address that
  carries an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) reaches that IPv4
  address, so it is judged by it; local-use NAT64 and site-local addresses, whose destination cannot
  be read from the address, count as private.
- The key is stored encrypted (write-only field), or read from an environment variable whose name
  starts with ``ROUTERHUB_LLM_KEY_`` — so an LLM cannot be pointed at ``DJANGO_SECRET_KEY`` or
  ``DATABASE_URL`` and have that value sent as a Bearer token to a server of the editor's choosing.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

API_KEY_ENV_PATTERN = r"^ROUTERHUB_LLM_KEY_[A-Z0-9_]{1,100}$"

# Never reachable, whatever the settings say: instance metadata services live here and hand out
# cloud credentials to whoever asks from inside the machine.
ALWAYS_REFUSED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # IPv4 link-local, incl. 169.254.169.254 (AWS, GCP, Azure, …)
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "0.0.0.0/8",  # "this host": connects to the local machine on Linux
        "::/128",
    )
)


# IPv6 prefixes whose last 32 bits are an IPv4 address the packets are delivered to: a NAT64 gateway
# translates the well-known prefix (RFC 6052), and Linux still routes IPv4-compatible addresses
# (RFC 4291, deprecated) through its automatic sit tunnel. 6to4 and Teredo are read by ``ipaddress``.
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# Never public, whatever Python's ``is_global`` says (it differs between Python versions): where the
# IPv4 address sits in a local-use NAT64 address depends on the prefix length its operator chose
# (RFC 8215), and site-local addresses (RFC 3879, deprecated) are as private as unique-local ones.
NOT_PUBLIC_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("64:ff9b:1::/48", "fec0::/10"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def normalised_ip(address: str) -> Address:
    """The address, with IPv4-mapped IPv6 (``::ffff:169.254.169.254``) turned into its IPv4 form."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def carried_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to, when it embeds one; else None."""
    if ip.version == 4:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    # :: and ::1 are in ::/96 too, but they are the unspecified and loopback addresses, not IPv4 ones
    if ip in NAT64_WELL_KNOWN or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address (ipaddress undoes the obfuscation)
    return None


def always_refused(ip: Address) -> bool:
    carried = carried_ipv4(ip)
    return any(ip in network or (carried is not None and carried in network) for network in ALWAYS_REFUSED_NETWORKS)


def is_public(ip: Address) -> bool:
    carried = carried_ipv4(ip)
    if carried is not None:
        return is_public(carried)
    if any(ip in network for network in NOT_PUBLIC_NETWORKS if ip.version == network.version):
        return False
    return ip.is_global and not ip.is_multicast


def literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return normalised_ip(host.strip("[]"))
    except ValueError:
        return None


def validate_api_base(value: str) -> None:
    """Model validator of ``LLM.api_base`` (the address itself is checked again at every call)."""
    if not value:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Only http:// and https:// endpoints can be called.", code="scheme")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(
            "Put no user:password in the URL (it would be stored and shown); use the LLM's API key field.",
            code="credentials",
        )
    if not parts.hostname:
        raise ValidationError("The URL has no host.", code="host")
    ip = literal_ip(parts.hostname)
    if ip is not None and always_refused(ip):
        raise ValidationError(
            f"{ip} is a link-local or cloud-metadata address: routerhub never calls it.", code="address"
        )
