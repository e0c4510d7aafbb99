"""The gateway's cached lookups (API key → tenant, LLM names, presets): a change made through the admin
or a service is seen at once by the process that made it; a change this process did not see (another
web process, a bulk UPDATE) within ROUTERHUB_GATEWAY_CACHE_SECONDS — the documented bound."""

from __future__ import annotations

import pytest
from django.utils import timezone

from registry.models import LLM
from routing import caches
from routing.caches import lookups_forget
from routing.exceptions import UnknownModel
from routing.models import ApiKey, Preset
from routing.selectors.gateway import model_target
from routing.services.tenancy import (
    api_key_authenticate_cached,
    api_key_create,
    api_keys_revoke,
    tenant_create,
    tenants_deactivate,
)

pytestmark = pytest.mark.django_db


class Clock:
    """time.monotonic() of the caches, moved by hand."""

    def __init__(self, monkeypatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(caches.time, "monotonic", lambda: self.now)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def tenant_key():
    tenant = tenant_create(name="cached", budget_usd="10")
    return tenant, api_key_create(tenant=tenant).secret


@pytest.fixture
def llm():
    return LLM.objects.create(
        name="cached-llm", api_base="http://127.0.0.1:9/v1", usd_per_mtok_in=1, usd_per_mtok_out=2
    )


def test_a_key_revoked_through_the_service_is_refused_at_once(tenant_key, clock):
    _, secret = tenant_key
    api_key = api_key_authenticate_cached(secret=secret)
    assert api_key is not None and api_key_authenticate_cached(secret=secret) is api_key  # the second from memory
    api_keys_revoke(keys=[api_key])
    assert api_key_authenticate_cached(secret=secret) is None


def test_a_key_revoked_unseen_by_this_process_is_refused_once_the_cache_seconds_pass(tenant_key, clock, settings):
    settings.ROUTERHUB_GATEWAY_CACHE_SECONDS = 5
    _, secret = tenant_key
    assert api_key_authenticate_cached(secret=secret) is not None
    ApiKey.objects.update(revoked_at=timezone.now())  # as another process would: no signal reaches this one
    clock.now += 4.9
    assert api_key_authenticate_cached(secret=secret) is not None  # still within the documented bound
    clock.now += 0.2
    assert api_key_authenticate_cached(secret=secret) is None


def test_with_no_cache_seconds_every_call_reads_the_key(tenant_key, clock, settings):
    settings.ROUTERHUB_GATEWAY_CACHE_SECONDS = 0
    _, secret = tenant_key
    assert api_key_authenticate_cached(secret=secret) is not None
    ApiKey.objects.update(revoked_at=timezone.now())
    assert api_key_authenticate_cached(secret=secret) is None


def test_a_tenant_deactivated_or_restricted_in_the_admin_is_seen_at_once(tenant_key, llm, clock):
    tenant, secret = tenant_key
    other = LLM.objects.create(name="other-llm", api_base="http://127.0.0.1:9/v1")
    cached_tenant = api_key_authenticate_cached(secret=secret).tenant
    assert model_target(tenant=cached_tenant, name=llm.name).llm.id == llm.id
    tenant.allowed_llms.set([other])  # the admin's allow-list: llm is no longer the tenant's
    with pytest.raises(UnknownModel):
        model_target(tenant=api_key_authenticate_cached(secret=secret).tenant, name=llm.name)
    tenants_deactivate(tenants=[tenant])
    assert api_key_authenticate_cached(secret=secret) is None


def test_an_llm_changed_in_the_admin_is_seen_at_once(tenant_key, llm, clock):
    tenant, _ = tenant_key
    assert model_target(tenant=tenant, name=llm.name).llm.api_model == ""
    llm.api_model = "provider/model-v2"
    llm.save()
    assert model_target(tenant=tenant, name=llm.name).llm.api_model == "provider/model-v2"
    llm.is_active = False
    llm.save()
    with pytest.raises(UnknownModel):
        model_target(tenant=tenant, name=llm.name)


def test_a_preset_changed_in_the_admin_is_seen_at_once(tenant_key, clock):
    tenant, _ = tenant_key
    preset = Preset.objects.create(tenant=tenant, name="cheap", lambda_value=1000)
    assert model_target(tenant=tenant, name="routerhub-auto:cheap").preset.lam == 1000
    preset.lambda_value = 10
    preset.save()
    assert model_target(tenant=tenant, name="routerhub-auto:cheap").preset.lam == 10
    preset.delete()
    with pytest.raises(UnknownModel):
        model_target(tenant=tenant, name="routerhub-auto:cheap")


def test_a_lookup_read_before_a_change_is_not_kept_after_it(tenant_key, llm, clock):
    """A thread that read the old row while another saved the new one must not cache the old row."""
    from routing.selectors import gateway

    generation = gateway._llms_by_name.generation
    lookups_forget()  # the change lands while the read is on its way
    gateway._llms_by_name.set(llm.name, "the old row", generation=generation)
    assert gateway._llms_by_name.get(llm.name) is None
