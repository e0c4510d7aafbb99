"""Tenants and their API keys (services and selectors).

A key is ``rh_`` + 40 random URL-safe characters. Only its SHA-256 and a short visible prefix are
stored: the key carries ~240 bits of entropy, so a fast unsalted hash cannot be brute-forced and a
lookup is one indexed equality (a slow password hash would cost more than routing itself).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import F, OuterRef, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from registry.models import LLM
from routing.models import ApiKey, BudgetPeriod, Tenant

KEY_PREFIX = "rh_"
VISIBLE_PREFIX_LENGTH = 11  # "rh_" + 8 characters: enough to tell keys apart in the admin
# last_used_at is written at most this often per key, so busy keys do not turn every route
# request into a write on one hot row.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # shown once; never stored


def key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def tenant_create(
    *,
    name: str,
    budget_usd: Decimal | float | str,
    budget_period: str = Tenant.Period.MONTH,
    when_budget_spent: str = Tenant.WhenSpent.REJECT,
    allowed_llms: list[LLM] | None = None,
    **defaults,
) -> Tenant:
    tenant = Tenant(
        name=name, budget_usd=Decimal(str(budget_usd)), budget_period=budget_period,
        when_budget_spent=when_budget_spent, **defaults,
    )
    tenant.full_clean()
    tenant.save()
    if allowed_llms:
        tenant.allowed_llms.set(allowed_llms)
    return tenant


def tenant_budget_changed(*, tenant: Tenant) -> None:
    """Carry a changed budget (or period) into the open budget period.

    The limit never drops below what is already spent (the row's CHECK), so lowering the budget
    under the spend simply closes the budget for the rest of the period.
    """
    from routing.budgets import period_bounds

    starts_at, _ = period_bounds(tenant.budget_period, timezone.now())
    BudgetPeriod.objects.filter(tenant=tenant, starts_at=starts_at).update(
        limit_usd=Greatest(tenant.budget_usd, F("spent_usd"))
    )


def api_key_fill(api_key: ApiKey) -> str:
    """Give an unsaved key a fresh secret (prefix and hash); returns the secret, which is not stored."""
    secret = KEY_PREFIX + secrets.token_urlsafe(30)
    api_key.prefix, api_key.key_hash = secret[:VISIBLE_PREFIX_LENGTH], key_hash(secret)
    return secret


def api_key_create(*, tenant: Tenant, name: str = "") -> IssuedKey:
    api_key = ApiKey(tenant=tenant, name=name)
    secret = api_key_fill(api_key)
    api_key.save()
    return IssuedKey(api_key=api_key, secret=secret)


def api_keys_revoke(*, keys) -> int:
    """Revoke keys (idempotent: an already revoked key keeps its first revocation time)."""
    return ApiKey.objects.filter(id__in=[k.id for k in keys], revoked_at__isnull=True).update(revoked_at=timezone.now())


_last_used_written: dict[int, float] = {}
_last_used_lock = threading.Lock()


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


def _touch(api_key: ApiKey) -> None:
    now_monotonic = time.monotonic()
    with _last_used_lock:
        if now_monotonic - _last_used_written.get(api_key.id, -1e9) < LAST_USED_RESOLUTION.total_seconds():
            return
        _last_used_written[api_key.id] = now_monotonic
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


@transaction.atomic
def tenant_with_key(*, name: str, budget_usd=None, budget_period: str | None = None, key_name: str = "") -> tuple[Tenant, bool, IssuedKey]:
    """Get or create a tenant by name (setting the budget if given), and issue it a new key."""
    tenant = Tenant.objects.filter(name=name).first()
    created = tenant is None
    if created:
        tenant = tenant_create(
            name=name, budget_usd=budget_usd if budget_usd is not None else Decimal("10"),
            budget_period=budget_period or Tenant.Period.MONTH,
        )
    elif budget_usd is not None or budget_period:
        if budget_usd is not None:
            tenant.budget_usd = Decimal(str(budget_usd))
        if budget_period:
            tenant.budget_period = budget_period
        tenant.full_clean()
        tenant.save()
        tenant_budget_changed(tenant=tenant)
    return tenant, created, api_key_create(tenant=tenant, name=key_name)
