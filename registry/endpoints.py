"""Rules for an LLM's upstream endpoint: which URLs and addresses may be called, where its key may come from.

Anyone who can edit an LLM chooses where routerhub sends requests, with which credentials. So:

- ``api_base`` is an ``http``/``https`` URL without user:password, and the addresses its host resolves
  to are checked at every call (``routing/upstream/addresses.py``): link-local and cloud-metadata
  addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254) are always refused; private, loopback and other
  non-public addresses only when ``ROUTERHUB_UPSTREAM_ALLOWED_HOSTS`` lists them.
- The key is stored encrypted (write-only field), or read from an environment variable whose name
  starts with ``ROUTERHUB_LLM_KEY_`` — so an LLM cannot be pointed at ``DJANGO_SECRET_KEY`` or
  ``DATABASE_URL`` and have that value sent as a Bearer token to a server of the editor's choosing.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

API_KEY_ENV_PREFIX = "ROUTERHUB_LLM_KEY_"
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


def normalised_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address, with IPv4-mapped IPv6 (``::ffff:169.254.169.254``) turned into its IPv4 form."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def always_refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip in network for network in ALWAYS_REFUSED_NETWORKS)


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
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
