"""A tenant that has routed keeps its billing history: it cannot be deleted, only deactivated."""

from __future__ import annotations

import pytest
from django.db.models import ProtectedError

from routing.models import Decision, Tenant
from tests.fixtures.api import ApiClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant_that_routed(make_tenant, fitted):
    tenant, key = make_tenant(name="billed")
    assert ApiClient(key).route().status_code == 200
    return tenant, key


def test_the_database_refuses_to_delete_a_tenant_with_decisions(tenant_that_routed):
    tenant, _ = tenant_that_routed
    with pytest.raises(ProtectedError):
        tenant.delete()
    with pytest.raises(ProtectedError):
        Tenant.objects.filter(id=tenant.id).delete()
    assert Decision.objects.filter(tenant=tenant).count() == 1


def test_the_admin_offers_no_delete_and_refuses_a_bulk_delete(tenant_that_routed, admin_client):
    tenant, _ = tenant_that_routed
    assert admin_client.get(f"/admin/routing/tenant/{tenant.id}/delete/").status_code == 403
    page = admin_client.post(
        "/admin/routing/tenant/", {"action": "delete_selected", "_selected_action": [tenant.id], "post": "yes"}
    )
    assert Tenant.objects.filter(id=tenant.id).exists()
    assert page.status_code == 200 and "Cannot delete tenant" in page.content.decode()


def test_deactivating_stops_the_keys_and_keeps_the_history(tenant_that_routed, admin_client):
    tenant, key = tenant_that_routed
    admin_client.post("/admin/routing/tenant/", {"action": "deactivate", "_selected_action": [tenant.id]})
    assert Tenant.objects.get(id=tenant.id).is_active is False
    assert ApiClient(key).route().status_code == 401
    assert Decision.objects.filter(tenant=tenant).count() == 1


def test_a_tenant_that_never_routed_can_be_deleted(make_tenant, admin_client):
    tenant, _ = make_tenant(name="unused")
    response = admin_client.post(f"/admin/routing/tenant/{tenant.id}/delete/", {"post": "yes"})
    assert response.status_code == 302 and not Tenant.objects.filter(id=tenant.id).exists()
