"""Staff reach only what their Django permissions allow: a view-only staff user reads, and can
neither issue, revoke, refit, activate, profile nor register — in the admin or through the API."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from registry.models import LLM
from registry.services import llm_register
from routing.models import ApiKey, Job, RoutingState, Tenant
from routing.services import tenancy
from tests.fixtures.api import ApiClient

pytestmark = pytest.mark.django_db


def staff_with(*codenames: str, username: str = "viewer"):
    user = get_user_model().objects.create_user(username, password="long-enough-password", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


VIEW_ALL = ("view_llm", "view_tenant", "view_apikey", "view_job", "view_routingstate", "view_decision")


@pytest.fixture
def viewer(client):
    client.force_login(staff_with(*VIEW_ALL))
    return client


@pytest.fixture
def queued(monkeypatch):
    sent = []
    monkeypatch.setattr("routing.services.jobs._send", lambda job_id: sent.append(job_id) or True)
    return sent


def test_every_admin_action_declares_the_permissions_it_needs():
    undeclared = [
        f"{model._meta.label}.{name}"
        for model, model_admin in admin.site._registry.items()
        for name in model_admin.actions or ()
        if not getattr(getattr(model_admin, name), "allowed_permissions", None)
    ]
    assert undeclared == []


LISTS = ("/admin/routing/tenant/", "/admin/routing/apikey/", "/admin/registry/llm/", "/admin/routing/job/")
WRITING_ACTIONS = ("issue_api_key", "revoke", "profile_now", "activate", "deactivate", "run_again", "refit")


def offered_actions(client, path) -> set[str]:
    page = client.get(path)
    assert page.status_code == 200, path
    return {name for name in WRITING_ACTIONS if f'<option value="{name}"' in page.content.decode()}


@pytest.fixture
def one_of_each(db):
    """The admin shows its actions only above a non-empty list."""
    tenant = Tenant.objects.create(name="acme", budget_usd=10)
    tenancy.api_key_create(tenant=tenant, name="k")
    Job.objects.create(kind=Job.Kind.PROFILE_LLM, llm=llm_register(name="m"), status=Job.Status.FAILED)


def test_a_view_only_staff_user_sees_the_lists_but_no_action_that_writes(viewer, one_of_each, admin_client):
    for path in LISTS:
        assert offered_actions(viewer, path) == set(), path
    assert set().union(*(offered_actions(admin_client, path) for path in LISTS)) == set(WRITING_ACTIONS) - {"refit"}


def test_a_view_only_staff_user_cannot_issue_or_revoke_keys(viewer):
    tenant = Tenant.objects.create(name="acme", budget_usd=10)
    issued = tenancy.api_key_create(tenant=tenant, name="live")
    viewer.post("/admin/routing/tenant/", {"action": "issue_api_key", "_selected_action": [tenant.id]})
    viewer.post("/admin/routing/apikey/", {"action": "revoke", "_selected_action": [issued.api_key.id]})
    viewer.post("/admin/routing/tenant/", {"action": "deactivate", "_selected_action": [tenant.id]})
    assert ApiKey.objects.count() == 1 and ApiKey.objects.get().revoked_at is None
    assert Tenant.objects.get().is_active is True


def test_a_view_only_staff_user_cannot_profile_refit_activate_or_run_jobs_again(viewer, routing_data, queued):
    llm = LLM.objects.first()
    job = Job.objects.create(kind=Job.Kind.PROFILE_LLM, llm=llm, status=Job.Status.FAILED)
    viewer.post("/admin/registry/llm/", {"action": "profile_now", "_selected_action": [llm.id]})
    viewer.post("/admin/registry/llm/", {"action": "deactivate", "_selected_action": [llm.id]})
    viewer.post("/admin/routing/job/", {"action": "run_again", "_selected_action": [job.id]})
    state = routing_data.state
    viewer.post("/admin/routing/routingstate/", {"action": "refit", "_selected_action": [state.id]})
    other = RoutingState.objects.create(
        version=state.version + 1,
        strategy=state.strategy,
        prompt_set=state.prompt_set,
        embedder=state.embedder,
        arrays=b"",
    )
    viewer.post("/admin/routing/routingstate/", {"action": "activate", "_selected_action": [other.id]})
    assert list(Job.objects.values_list("id", flat=True)) == [job.id] and queued == []
    assert LLM.objects.get(id=llm.id).is_active is True
    assert RoutingState.objects.get(is_active=True) == state


def test_the_actions_work_for_staff_holding_the_permissions(
    client, routing_data, queued, django_capture_on_commit_callbacks
):
    client.force_login(staff_with(*VIEW_ALL, "add_apikey", "change_apikey", "change_llm", "add_job"))
    tenant = Tenant.objects.create(name="acme", budget_usd=10)
    client.post("/admin/routing/tenant/", {"action": "issue_api_key", "_selected_action": [tenant.id]})
    assert ApiKey.objects.filter(tenant=tenant).count() == 1
    client.post("/admin/routing/apikey/", {"action": "revoke", "_selected_action": [ApiKey.objects.get().id]})
    assert ApiKey.objects.get().revoked_at is not None
    llm = LLM.objects.first()
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/registry/llm/", {"action": "profile_now", "_selected_action": [llm.id]})
    assert Job.objects.get().llm == llm and len(queued) == 1


# -- staff API --------------------------------------------------------------------------------------
@pytest.fixture
def view_only_api(db):
    client = ApiClient()
    client.client.force_login(staff_with(*VIEW_ALL))
    return client


def test_a_view_only_staff_user_reads_the_staff_api(view_only_api, routing_data):
    assert view_only_api.get("/api/v1/jobs").status_code == 200
    assert view_only_api.get("/api/v1/llms").status_code == 200
    assert view_only_api.get("/api/v1/usage").status_code == 200


def test_a_view_only_staff_user_cannot_register_update_or_queue_through_the_api(view_only_api, routing_data, queued):
    name = LLM.objects.first().name
    cases = [
        view_only_api.post("/api/v1/llms", {"name": "sneaky", "usd_per_query": 0}),
        view_only_api.patch(f"/api/v1/llms/{name}", {"usd_per_query": 0}),
        view_only_api.post("/api/v1/jobs", {"kind": "refit"}),
        view_only_api.post("/api/v1/jobs", {"kind": "profile_llm", "llm": name}),
    ]
    for response in cases:
        assert response.status_code == 403, response.content
        assert "lacks the permission" in response.json()["error"]["message"]
    assert "registry.add_llm" in cases[0].json()["error"]["message"]
    assert "registry.change_llm" in cases[1].json()["error"]["message"]
    assert "routing.add_job" in cases[2].json()["error"]["message"]
    assert not LLM.objects.filter(name="sneaky").exists() and LLM.objects.get(name=name).usd_per_query is None
    assert not Job.objects.exists() and queued == []


def test_staff_without_any_permission_cannot_even_read(db, routing_data):
    client = ApiClient()
    client.client.force_login(staff_with(username="bare"))
    for path in ("/api/v1/jobs", "/api/v1/llms", "/api/v1/usage"):
        response = client.get(path)
        assert response.status_code == 403 and "lacks the permission" in response.json()["error"]["message"], path


def test_staff_with_the_permissions_register_and_update(db, routing_data, queued):
    client = ApiClient()
    client.client.force_login(staff_with("add_llm", "change_llm", "add_job"))
    assert client.post("/api/v1/llms", {"name": "new-one"}).status_code in (201, 202)
    assert client.patch("/api/v1/llms/new-one", {"usd_per_query": 0.5}).json()["usd_per_query"] == 0.5


def test_registering_in_the_admin_needs_add_permission(client, queued):
    client.force_login(staff_with(*VIEW_ALL))
    response = client.post("/admin/registry/llm/add/", {"name": "x", "is_active": "on", "metadata": "{}"})
    assert response.status_code == 403 and not LLM.objects.exists()
    llm = llm_register(name="y")
    client.post(f"/admin/registry/llm/{llm.id}/change/", {"name": "y", "provider": "evil", "metadata": "{}"})
    assert LLM.objects.get(id=llm.id).provider == ""
