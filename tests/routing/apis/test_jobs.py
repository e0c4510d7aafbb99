"""Triggers: the admin (new LLM, "Profile now", "Refit routing state") and the staff job API."""

import pytest

from registry.models import LLM
from registry.services import llm_register
from routing import tasks
from routing.models import Job, RoutingState, Tenant
from routing.services import tenancy


@pytest.fixture
def sent(monkeypatch):
    calls = []
    for task in tasks.TASK_OF_KIND.values():
        monkeypatch.setattr(
            task, "apply_async", lambda *args, _task=task, **kwargs: calls.append((_task.name, kwargs["kwargs"]))
        )
    return calls


# -- admin ------------------------------------------------------------------------------------------
def test_adding_an_llm_in_the_admin_queues_its_profiling_after_the_save_commits(
    admin_client, sent, django_capture_on_commit_callbacks
):
    form = {
        "name": "fresh",
        "provider": "acme",
        "is_active": "on",
        "api_base": "http://127.0.0.1:9/v1",
        "api_model": "fresh-1",
        "usd_per_mtok_in": "0.1",
        "usd_per_mtok_out": "0.2",
        "metadata": "{}",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/registry/llm/add/", form)
        assert response.status_code == 302, response.content[:2000]
        assert sent == []
    llm = LLM.objects.get(name="fresh")
    job = Job.objects.get()
    assert (job.kind, job.llm, job.status) == (Job.Kind.PROFILE_LLM, llm, Job.Status.QUEUED)
    assert sent == [("routing.profile_llm", {"job_id": job.id, "llm_id": llm.id})]


def test_editing_an_llm_in_the_admin_queues_nothing(admin_client, sent, django_capture_on_commit_callbacks):
    llm = llm_register(name="old", provider="acme")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"/admin/registry/llm/{llm.id}/change/",
            {"name": "old", "provider": "other", "is_active": "on", "metadata": "{}"},
        )
    assert response.status_code == 302 and not Job.objects.exists() and sent == []


def test_profile_now_queues_one_job_per_llm_and_not_a_second_one(
    admin_client, sent, django_capture_on_commit_callbacks
):
    llms = [llm_register(name="one"), llm_register(name="two")]
    action = {"action": "profile_now", "_selected_action": [llm.id for llm in llms]}
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/registry/llm/", action)
        admin_client.post("/admin/registry/llm/", action)
    assert sorted(Job.objects.values_list("llm__name", flat=True)) == ["one", "two"]
    assert len(sent) == 2


def test_refit_action_queues_a_refit_of_the_selected_state(
    routing_data, admin_client, sent, django_capture_on_commit_callbacks
):
    state = routing_data.state
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/routing/routingstate/", {"action": "refit", "_selected_action": [state.id]}
        )
    assert response.status_code == 302
    job = Job.objects.get(kind=Job.Kind.REFIT)
    # A tuned state is tuned again, holding fixed only what its fit was given (routing/services/state.py).
    assert job.arguments == {
        "prompt_set_id": state.prompt_set_id,
        "strategy": state.strategy,
        "params": {"n_clusters": 3, "prior_strength": 1.0},
    }
    assert sent == [("routing.refit_routing_state", {"job_id": job.id})]


def test_job_state_and_profile_pages_render(routing_data, admin_client, sent):
    tasks.profile_llm.apply(kwargs={"llm_id": LLM.objects.get(name="small").id})
    job, state = Job.objects.get(), routing_data.state
    profile = state.profiles.first()
    for url in (
        "/admin/routing/job/",
        f"/admin/routing/job/{job.id}/change/",
        "/admin/routing/routingstate/",
        f"/admin/routing/routingstate/{state.id}/change/",
        "/admin/routing/llmprofile/",
        f"/admin/routing/llmprofile/{profile.id}/change/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    assert b"succeeded" in admin_client.get("/admin/routing/job/").content


def test_activate_action_switches_back_to_an_older_state(routing_data, admin_client):
    from routing.services.state import routing_state_fit

    newer = routing_state_fit(prompt_set=routing_data.prompt_set, strategy="uniroute_kmeans", params={"n_clusters": 2})
    admin_client.post(
        "/admin/routing/routingstate/", {"action": "activate", "_selected_action": [routing_data.state.id]}
    )
    assert RoutingState.objects.get(is_active=True) == routing_data.state != newer


# -- staff API --------------------------------------------------------------------------------------
def test_staff_queue_profiling_through_the_api_once(admin_client, sent, django_capture_on_commit_callbacks):
    llm = llm_register(name="api-made")
    with django_capture_on_commit_callbacks(execute=True):
        first = admin_client.post(
            "/api/v1/jobs",
            {"kind": "profile_llm", "llm": "api-made", "arguments": {"max_cost_usd": 2}},
            content_type="application/json",
        )
        second = admin_client.post(
            "/api/v1/jobs", {"kind": "profile_llm", "llm": "api-made"}, content_type="application/json"
        )
    assert first.status_code == second.status_code == 202
    assert first.json()["created"] is True and second.json()["created"] is False
    job = first.json()["job"]
    # "pending": the test's transaction holds the commit, so the task was not sent when the answer was written
    assert (job["kind"], job["llm"], job["status"], job["arguments"]) == (
        "profile_llm",
        "api-made",
        "pending",
        {"max_cost_usd": 2},
    )
    assert Job.objects.get(id=job["id"]).status == Job.Status.QUEUED  # sent once the transaction committed
    assert second.json()["job"]["id"] == job["id"] and sent == [
        ("routing.profile_llm", {"job_id": job["id"], "llm_id": llm.id})
    ]


def test_staff_list_filter_and_read_jobs(admin_client, sent):
    llm_register(name="a")
    admin_client.post("/api/v1/jobs", {"kind": "profile_llm", "llm": "a"}, content_type="application/json")
    admin_client.post("/api/v1/jobs", {"kind": "reprofile_all"}, content_type="application/json")
    assert [j["kind"] for j in admin_client.get("/api/v1/jobs").json()] == ["reprofile_all", "profile_llm"]
    only = admin_client.get("/api/v1/jobs", {"llm": "a"}).json()
    assert len(only) == 1
    detail = admin_client.get(f"/api/v1/jobs/{only[0]['id']}")
    assert detail.status_code == 200 and detail.json()["progress_total"] == 0
    assert admin_client.get("/api/v1/jobs/999999").status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [
        ({"kind": "profile_llm"}, "llm"),
        ({"kind": "profile_llm", "llm": "nobody"}, "llm"),
        ({"kind": "profile_llm", "llm": "a", "arguments": {"concurency": 2}}, "arguments"),
        ({"kind": "refit", "llm": "a"}, "llm"),
        ({"kind": "refit", "prompt_set": "nope"}, "prompt_set"),
        ({"kind": "reprofile_all", "strategy": "uniroute_kmeans"}, "strategy"),
        ({"kind": "teleport"}, "kind"),
        # Started where its cost estimate is shown first (profile_validation_set, the tenant admin).
        ({"kind": "validation_profile"}, "kind"),
    ],
)
def test_bad_job_requests_name_the_field(admin_client, sent, body, field):
    llm_register(name="a")
    response = admin_client.post("/api/v1/jobs", body, content_type="application/json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"]
    assert not Job.objects.exists()


def test_only_staff_may_use_the_job_api(client, django_user_model, db):
    assert client.get("/api/v1/jobs").status_code in (401, 403)
    user = django_user_model.objects.create_user(username="plain", password="x-long-password")
    client.force_login(user)
    assert client.get("/api/v1/jobs").status_code == 403
    client.logout()
    issued = tenancy.api_key_create(tenant=Tenant.objects.create(name="acme", budget_usd=10), name="k")
    response = client.get("/api/v1/jobs", HTTP_AUTHORIZATION=f"Bearer {issued.secret}")
    assert response.status_code == 403
