"""Reads of tenants and API keys: a key's hash, a tenant's allowed LLMs, the tenant of a user.

A key is ``rh_`` + 40 random URL-safe characters. Only its SHA-256 and a short visible prefix are
stored: the key carries ~240 bits of entropy, so a fast unsalted hash cannot be brute-forced and a
lookup is one indexed equality (a slow password hash would cost more than routing itself).
"""

from __future__ import annotations

import hashlib

from routing.caches import expiring_cache
from routing.models import Tenant, TenantMembership

KEY_PREFIX = "rh_"
# Tenants with a label of their own in the metrics (the oldest ones); the rest are counted as "other".
METRICS_TENANTS = 20
# "names" → the tenants labelled by name in the metrics (tenant_metrics_label)
_metrics_tenants = expiring_cache("metrics tenants", seconds=lambda: 60.0)


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def tenant_metrics_label(*, name: str) -> str:
    """The tenant's label in the metrics: its name if it is one of the :data:`METRICS_TENANTS`
    oldest tenants, else "other" — the same in every process, and bounded however many tenants sign up."""
    names = _metrics_tenants.get("names")
    if names is None:
        generation = _metrics_tenants.generation
        oldest = Tenant.objects.order_by("id").values_list("name", flat=True)[:METRICS_TENANTS]
        names = frozenset(oldest)
        _metrics_tenants.set("names", names, generation=generation)
    return name if name in names else "other"


def tenant_allowed_llm_ids(*, tenant: Tenant) -> frozenset[int]:
    """Ids of the LLMs the tenant restricts itself to; empty means every active LLM."""
    preloaded = getattr(tenant, "allowed_llm_ids", None)  # set by services/tenancy.api_key_authenticate
    if preloaded is not None:
        return preloaded
    return frozenset(tenant.allowed_llms.values_list("id", flat=True))


def tenant_of_user(*, user) -> Tenant | None:
    """The tenant a (non-staff) dashboard user is linked to, or None."""
    if not getattr(user, "is_authenticated", False):
        return None
    membership = TenantMembership.objects.select_related("tenant").filter(user_id=user.pk).first()
    return membership.tenant if membership else None


def tenant_by_name(*, name: str) -> Tenant | None:
    return Tenant.objects.filter(name=name).first()


def tenant_names() -> list[str]:
    """Every tenant's name, in order."""
    return list(Tenant.objects.order_by("name").values_list("name", flat=True))
