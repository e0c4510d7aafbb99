"""Reads of tenants and API keys: authenticating a key, a tenant's allowed LLMs.

A key is ``rh_`` + 40 random URL-safe characters. Only its SHA-256 and a short visible prefix are
stored: the key carries ~240 bits of entropy, so a fast unsalted hash cannot be brute-forced and a
lookup is one indexed equality (a slow password hash would cost more than routing itself).
"""

from __future__ import annotations

import hashlib
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import OuterRef, Q
from django.utils import timezone

from routing.caches import expiring_cache, process_cache
from routing.models import ApiKey, Tenant, TenantMembership

KEY_PREFIX = "rh_"
# last_used_at is written at most this often per key, so busy keys do not turn every route
# request into a write on one hot row.
LAST_USED_RESOLUTION = timedelta(seconds=60)

# API key id → when this process last wrote its last_used_at (monotonic seconds)
_last_used_written = process_cache("api key last use")
# key hash → the live key with its tenant and allowed LLMs (api_key_authenticate_cached)
_api_keys = expiring_cache("api keys", seconds=lambda: settings.ROUTERHUB_GATEWAY_CACHE_SECONDS, max_entries=10_000)
# "names" → the tenants labelled by name in the metrics (tenant_metrics_label)
_metrics_tenants = expiring_cache("metrics tenants", seconds=lambda: 60.0)


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def api_key_authenticate(*, secret: str) -> ApiKey | None:
    """The live key (with its tenant) for ``secret``; None if unknown, revoked or the tenant is inactive.

    The tenant's allowed LLMs come in the same query (an array subquery): route requests need them,
    and a round trip to the database is a good part of a route request's time.
    """
    if not secret.startswith(KEY_PREFIX):
        return None
    allowed = Tenant.allowed_llms.through.objects.filter(tenant_id=OuterRef("tenant_id")).values("llm_id")
    api_key = (
        ApiKey.objects.select_related("tenant")
        .annotate(allowed_llm_ids=ArraySubquery(allowed))
        .filter(key_hash=key_hash(secret), revoked_at__isnull=True, tenant__is_active=True)
        .order_by()
        .first()
    )
    if api_key is not None:
        api_key.tenant.allowed_llm_ids = frozenset(api_key.allowed_llm_ids)
        _touch(api_key)
    return api_key


def api_key_authenticate_cached(*, secret: str) -> ApiKey | None:
    """:func:`api_key_authenticate`, remembered for ``ROUTERHUB_GATEWAY_CACHE_SECONDS`` (the gateway and
    the API's bearer keys).

    Uncached, the lookup is one database round trip per call (with the allowed LLMs' array subquery,
    the largest single part of a route request whose prompt is cached). A key revoked (or a tenant
    deactivated or changed) through the admin or a service is forgotten at once by the process that
    did it (``routing/signals.py``); the other web processes stop accepting it within the cache's
    seconds — the documented bound. Unknown keys are never remembered (their rate limit must see
    every try), and the tenant the key carries is shared: callers must not change it.
    """
    if not secret.startswith(KEY_PREFIX):
        return None
    digest = key_hash(secret)
    api_key = _api_keys.get(digest)
    if api_key is not None:
        _touch(api_key)
        return api_key
    generation = _api_keys.generation
    api_key = api_key_authenticate(secret=secret)
    if api_key is not None:
        _api_keys.set(digest, api_key, generation=generation)
    return api_key


def tenant_metrics_label(*, name: str) -> str:
    """The tenant's label in the metrics: its name if it is one of the ``ROUTERHUB_METRICS_TENANTS``
    oldest tenants, else "other" — the same in every process, and bounded however many tenants sign up."""
    names = _metrics_tenants.get("names")
    if names is None:
        generation = _metrics_tenants.generation
        oldest = Tenant.objects.order_by("id").values_list("name", flat=True)[: settings.ROUTERHUB_METRICS_TENANTS]
        names = frozenset(oldest)
        _metrics_tenants.set("names", names, generation=generation)
    return name if name in names else "other"


def _touch(api_key: ApiKey) -> None:
    now_monotonic = time.monotonic()
    with _last_used_written.lock:
        if now_monotonic - _last_used_written.get(api_key.id, -1e9) < LAST_USED_RESOLUTION.total_seconds():
            return
        _last_used_written.set(api_key.id, now_monotonic)
    now = timezone.now()
    # Conditional, so several processes touching the same key write it once per resolution.
    ApiKey.objects.filter(id=api_key.id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ).update(last_used_at=now)
    api_key.last_used_at = now


def tenant_allowed_llm_ids(*, tenant: Tenant) -> frozenset[int]:
    """Ids of the LLMs the tenant restricts itself to; empty means every active LLM."""
    preloaded = getattr(tenant, "allowed_llm_ids", None)  # set by api_key_authenticate
    if preloaded is not None:
        return preloaded
    return frozenset(tenant.allowed_llms.values_list("id", flat=True))


def tenant_of_user(*, user) -> Tenant | None:
    """The tenant a (non-staff) dashboard user is linked to, or None."""
    if not getattr(user, "is_authenticated", False):
        return None
    membership = TenantMembership.objects.select_related("tenant").filter(user_id=user.pk).first()
    return membership.tenant if membership else None
