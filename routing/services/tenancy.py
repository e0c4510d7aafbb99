"""Writes of tenants and their API keys: create, change budgets, issue and revoke keys; authenticate
a key, which records when it was last used.

Keys are shown once and stored only as a hash (``routing/selectors/tenancy.py`` says why).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.db import transaction
from django.db.models import F, OuterRef, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from registry.models import LLM
from routing.caches import expiring_cache, lookups_forget, process_cache
from routing.models import ApiKey, BudgetPeriod, Tenant
from routing.selectors.budgets import period_bounds
from routing.selectors.tenancy import KEY_PREFIX, key_hash

VISIBLE_PREFIX_LENGTH = 11  # "rh_" + 8 characters: enough to tell keys apart in the admin


# last_used_at is written at most this often per key, so busy keys do not turn every route
# request into a write on one hot row.
LAST_USED_RESOLUTION = timedelta(seconds=60)

# API key id → when this process last wrote its last_used_at (monotonic seconds)
_last_used_written = process_cache("api key last use")
# key hash → the live key with its tenant and allowed LLMs (api_key_authenticate_cached)
_api_keys = expiring_cache("api keys", seconds=lambda: settings.ROUTERHUB_GATEWAY_CACHE_SECONDS, max_entries=10_000)


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


def forget_lookups(**_) -> None:
    """Forget this process's cached lookups now, and again when the transaction commits: a request
    that read the old row in between must not keep it. Also the receiver of ``routing/signals.py``."""
    lookups_forget()
    transaction.on_commit(lookups_forget)


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    secret: str  # shown once; never stored


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
        name=name,
        budget_usd=Decimal(str(budget_usd)),
        budget_period=budget_period,
        when_budget_spent=when_budget_spent,
        **defaults,
    )
    tenant.full_clean()
    tenant.save()
    if allowed_llms:
        tenant.allowed_llms.set(allowed_llms)
    return tenant


def tenant_budget_changed(*, tenant: Tenant) -> None:
    """Carry a changed budget into the open budget period of the tenant's (possibly new) kind.

    The limit never drops below what is already spent (the row's CHECK) plus what web processes hold
    in leases (calls already admitted against them become spend when their decisions are written),
    so lowering the budget under the spend simply closes the budget for the rest of the period. A changed period kind
    needs nothing here: the next request opens a period of the new kind (budget_period_current).
    """
    starts_at, _ = period_bounds(tenant.budget_period, timezone.now())
    BudgetPeriod.objects.filter(tenant=tenant, period=tenant.budget_period, starts_at=starts_at).update(
        limit_usd=Greatest(tenant.budget_usd, F("spent_usd") + F("leased_usd"))
    )


def tenants_deactivate(*, tenants) -> int:
    """Stop tenants from routing (their keys are refused) while keeping their decisions and spend.

    Tenants that have routed cannot be deleted (``Decision.tenant`` is PROTECT): this is how they end.
    """
    changed = Tenant.objects.filter(id__in=[t.id for t in tenants], is_active=True).update(
        is_active=False, updated_at=timezone.now()
    )
    forget_lookups()  # QuerySet.update() sends no signal: the gateway's cached keys must go now
    return changed


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


@transaction.atomic
def api_key_rotate(*, tenant: Tenant, name: str) -> tuple[IssuedKey, int]:
    """Revoke the tenant's live keys labelled ``name`` and issue a new one under that label.

    For keys a command hands out again on every run (``setup_demo``): each run leaves exactly one
    live key with that label. Returns the new key and how many were revoked.
    """
    revoked = ApiKey.objects.filter(tenant=tenant, name=name, revoked_at__isnull=True).update(revoked_at=timezone.now())
    forget_lookups()
    return api_key_create(tenant=tenant, name=name), revoked


def api_keys_revoke(*, keys) -> int:
    """Revoke keys (idempotent: an already revoked key keeps its first revocation time)."""
    revoked = ApiKey.objects.filter(id__in=[k.id for k in keys], revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    forget_lookups()  # QuerySet.update() sends no signal: the gateway's cached keys must go now
    return revoked


@transaction.atomic
def tenant_with_key(
    *, name: str, budget_usd=None, budget_period: str | None = None, key_name: str = ""
) -> tuple[Tenant, bool, IssuedKey]:
    """Get or create a tenant by name (setting the budget if given), and issue it a new key."""
    tenant = Tenant.objects.filter(name=name).first()
    created = tenant is None
    if created:
        tenant = tenant_create(
            name=name,
            budget_usd=budget_usd if budget_usd is not None else Decimal("10"),
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
