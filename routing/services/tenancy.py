"""Writes of tenants and their API keys: create, change budgets, issue and revoke keys.

Keys are shown once and stored only as a hash (``routing/selectors/tenancy.py`` says why).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest
from django.utils import timezone

from registry.models import LLM
from routing.caches import lookups_forget
from routing.models import ApiKey, BudgetPeriod, Tenant
from routing.selectors.budgets import period_bounds
from routing.selectors.tenancy import KEY_PREFIX, key_hash

VISIBLE_PREFIX_LENGTH = 11  # "rh_" + 8 characters: enough to tell keys apart in the admin


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
