"""Tenants see only their own decisions, usage and feedback; staff see everything; keys are hashed."""

import hashlib

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from registry.models import LLM
from routing.models import ApiKey, Decision, Job, Tenant
from tests.fixtures.api import ROUTE, ApiClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_tenants(make_tenant, fitted):
    (_alpha, alpha_key), (_beta, beta_key) = make_tenant(name="alpha"), make_tenant(name="beta")
    return ApiClient(alpha_key), ApiClient(beta_key)


@pytest.fixture
def staff():
    """A staff user with the permissions of an operator: read decisions and LLMs, register and update LLMs."""
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("ops", password="s3cret-pass", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_decision", "view_llm", "add_llm", "change_llm", "add_job"])
    )
    client = ApiClient()
    client.client.force_login(user)
    return client


def test_another_tenants_decision_is_a_404_for_reading_and_feedback(two_tenants):
    alpha, beta = two_tenants
    decision_id = alpha.route().json()["decision_id"]
    assert alpha.get(f"{ROUTE}/{decision_id}").status_code == 200
    assert beta.get(f"{ROUTE}/{decision_id}").status_code == 404
    response = beta.post(f"{ROUTE}/{decision_id}/feedback", {"actual_cost_usd": 0})
    assert response.status_code == 404
    assert Decision.objects.get(id=decision_id).feedback_at is None


def test_usage_counts_only_the_callers_requests(two_tenants):
    alpha, beta = two_tenants
    for _ in range(3):
        alpha.route(**{"lambda": 0})
    beta.route(**{"lambda": 0})
    usage = alpha.get("/api/v1/usage").json()
    assert usage["tenant"] == "alpha" and usage["totals"]["requests"] == 3
    assert sum(day["requests"] for day in usage["by_day"]) == 3
    assert sum(row["requests"] for row in usage["by_llm"]) == 3
    assert usage["totals"]["spent_usd"] == pytest.approx(usage["budget"]["spent_usd"])
    assert beta.get("/api/v1/usage").json()["totals"]["requests"] == 1


def test_a_tenant_cannot_ask_for_another_tenants_usage(two_tenants):
    alpha, _ = two_tenants
    response = alpha.get("/api/v1/usage", {"tenant": "beta"})
    assert response.status_code == 403


def test_usage_rejects_bad_dates(two_tenants):
    alpha, _ = two_tenants
    assert "since" in alpha.get("/api/v1/usage", {"since": "yesterday"}).json()["error"]["fields"]
    assert "until" in alpha.get("/api/v1/usage", {"until": ""}).json()["error"]["fields"]


def test_staff_see_every_tenants_decisions_and_usage(two_tenants, staff):
    alpha, beta = two_tenants
    decision_id = alpha.route().json()["decision_id"]
    beta.route()
    assert staff.get(f"{ROUTE}/{decision_id}").json()["tenant"] == "alpha"
    assert staff.get("/api/v1/usage").json()["totals"]["requests"] == 2
    per_tenant = staff.get("/api/v1/usage", {"tenant": "beta"}).json()
    assert per_tenant["tenant"] == "beta" and per_tenant["totals"]["requests"] == 1
    assert staff.get("/api/v1/usage", {"tenant": "nobody"}).status_code == 404


def test_staff_cannot_route_without_a_tenant_key(fitted, staff):
    response = staff.route()
    assert response.status_code == 403 and "tenant API key" in response.json()["error"]["message"]


def test_llms_lists_only_what_the_tenant_may_use(make_tenant, fitted):
    tenant, key = make_tenant(name="narrow")
    tenant.allowed_llms.set(LLM.objects.filter(name__in=["Yi-6B", "gemma-7b"]))
    names = {llm["name"] for llm in ApiClient(key).get("/api/v1/llms").json()["llms"]}
    assert names == {"Yi-6B", "gemma-7b"}


def test_registering_and_updating_llms_is_staff_only(
    api, fitted, staff, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr("routing.services.jobs._send", lambda job_id: sent.append(job_id))
    new = {
        "name": "tiny-1b",
        "provider": "local",
        "api_base": "http://127.0.0.1:9/v1",
        "api_model": "tiny",
        "usd_per_mtok_in": 0.01,
        "usd_per_mtok_out": 0.02,
    }
    assert api.post("/api/v1/llms", new).status_code == 403
    assert api.patch("/api/v1/llms/gemma-7b", {"usd_per_query": 0.1}).status_code == 403

    with django_capture_on_commit_callbacks(execute=True):
        created = staff.post("/api/v1/llms", new)
    # The test's transaction defers the commit, so the task is not with the broker when the answer is
    # written: 202 with the job pending (201 with a live broker: tests/processes/test_broker_down.py).
    assert created.status_code == 202 and created.json()["profiling_job_status"] == "pending", created.content
    job = Job.objects.get(id=created.json()["profiling_job"])
    assert (job.kind, job.llm.name, sent) == (Job.Kind.PROFILE_LLM, "tiny-1b", [job.id])
    taken = staff.post("/api/v1/llms", new)
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "conflict"
    assert "'tiny-1b' is registered already" in taken.json()["error"]["message"]
    bad = staff.post("/api/v1/llms", {**new, "name": "bad\tname", "usd_per_mtok_in": -1}).json()["error"]["fields"]
    assert {"name", "usd_per_mtok_in"} <= set(bad)

    updated = staff.patch("/api/v1/llms/tiny-1b", {"usd_per_query": 0.001, "is_active": False})
    assert updated.status_code == 200 and updated.json()["usd_per_query"] == 0.001
    assert LLM.objects.get(name="tiny-1b").is_active is False
    assert staff.patch("/api/v1/llms/nope", {"usd_per_query": 1}).status_code == 404


def test_keys_are_stored_only_as_a_hash_with_a_visible_prefix(make_tenant, fitted):
    tenant, key = make_tenant()
    stored = ApiKey.objects.get(tenant=tenant)
    assert key.startswith("rh_") and len(key) > 40
    assert stored.key_hash == hashlib.sha256(key.encode()).hexdigest() and key.startswith(stored.prefix)
    assert key not in {str(value) for value in ApiKey.objects.values().get().values()}
    assert stored.last_used_at is None
    ApiClient(key).route()
    stored.refresh_from_db()
    assert stored.last_used_at is not None


def test_a_tenant_may_hold_several_keys(make_tenant, fitted):
    from routing.services.tenancy import api_key_create

    tenant, first = make_tenant()
    second = api_key_create(tenant=tenant).secret
    assert ApiClient(first).route().status_code == ApiClient(second).route().status_code == 200
    assert Decision.objects.filter(tenant=tenant).count() == 2
    assert set(Decision.objects.values_list("api_key__prefix", flat=True)) == {first[:11], second[:11]}


def test_create_api_key_command_prints_a_working_key_once(fitted, capsys):
    call_command("create_api_key", "--tenant", "cli", "--budget-usd", "5", "--period", "week")
    captured = capsys.readouterr()
    key = captured.out.strip()
    tenant = Tenant.objects.get(name="cli")
    assert (tenant.budget_usd, tenant.budget_period) == (5, "week")
    assert "shown once" in captured.err
    assert ApiClient(key).route().status_code == 200
    call_command("create_api_key", "--tenant", "cli")
    assert capsys.readouterr().out.strip() != key
    assert tenant.api_keys.count() == 2


def test_setup_demo_issues_a_demo_key_and_prints_a_working_curl(fitted, settings, tmp_path, capsys):
    import shlex

    settings.BASE_DIR = tmp_path  # where it keeps the admin password
    call_command(
        "setup_demo", "--dataset", "mmlu-slice", "--strategies", "uniroute_kmeans", "--base-url", "http://testserver"
    )
    output = capsys.readouterr().out
    curl = next(line for line in output.splitlines() if line.strip().startswith("curl"))
    words = shlex.split(curl)
    key = words[words.index("-H") + 1].removeprefix("Authorization: Bearer ")
    body = words[words.index("-d") + 1]
    assert words[2] == "http://testserver/api/v1/route"
    tenant = Tenant.objects.get(name="demo")
    assert (tenant.budget_period, tenant.budget_usd) == ("month", 10)
    response = ApiClient(key).post(ROUTE, body)
    assert response.status_code == 200, response.content
    call_command(
        "setup_demo", "--dataset", "mmlu-slice", "--strategies", "uniroute_kmeans", "--base-url", "http://testserver"
    )  # again: same tenant, a new key
    assert Tenant.objects.filter(name="demo").count() == 1 and tenant.api_keys.count() == 2


def test_deleting_a_tenant_that_never_routed_deletes_its_keys(make_tenant, fitted):
    # A tenant that has routed cannot be deleted (tests/routing/admin/test_tenant_history.py).
    tenant, key = make_tenant()
    tenant.delete()
    assert not ApiKey.objects.exists() and ApiClient(key).route().status_code == 401
