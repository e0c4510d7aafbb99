"""LLM names as providers and data sets write them (``org/model``, ``model@host``, ``model:tag``) work
everywhere: the importer, the route API, the LLM list, the staff API's URLs, jobs, the admin,
evaluation output and plots."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from registry.models import LLM, PromptSet
from routing.caches import reset_all
from routing.models import Job
from routing.services.state import routing_state_fit
from tests.fixtures.api import ApiClient
from tests.fixtures.subjects import write_subjects_data

pytestmark = pytest.mark.django_db

PROVIDER_NAMES = {
    "big-generalist": "meta-llama/Llama-3.1-70B-Instruct",
    "mid-generalist": "Llama-3.1-405B-Inst@sambanova",
    "law-specialist": "qwen2.5:7b",
    "small": "openai/gpt-4o-mini",
}


@pytest.fixture(scope="module")
def provider_named_data(tmp_path_factory):
    return write_subjects_data(tmp_path_factory.mktemp("names") / "provider-names", names=PROVIDER_NAMES)


@pytest.fixture
def imported(provider_named_data, capsys):
    call_command("import_routing_data", str(provider_named_data), "--name", "provider-names")
    return capsys.readouterr().out


@pytest.fixture
def routed(imported):
    state = routing_state_fit(
        prompt_set=PromptSet.objects.get(name="provider-names"), strategy="uniroute_kmeans", params={"n_clusters": 3}
    )
    reset_all()
    yield state
    reset_all()


@pytest.fixture
def staff_client(db):
    user = get_user_model().objects.create_superuser("ops", password="ops-password-123")
    client = ApiClient()
    client.client.force_login(user)
    return client


def test_a_data_set_with_provider_names_imports_whole(imported):
    assert "4 (4 new, 0 updated)" in imported
    assert sorted(LLM.objects.values_list("name", flat=True)) == sorted(PROVIDER_NAMES.values())


def test_route_answers_name_the_llm_as_written(routed, make_tenant):
    _, key = make_tenant()
    api = ApiClient(key)
    for name in PROVIDER_NAMES.values():
        response = api.route("Which integer polynomial derivative theorem?", models=[name])
        assert response.status_code == 200, response.content
        answer = response.json()
        assert answer["llm"]["name"] == name
        assert response["X-Routerhub-Model"] == name
        decision = api.get(f"/api/v1/route/{answer['decision_id']}").json()
        assert decision["llm"]["name"] == name
    usage = api.get("/api/v1/usage").json()
    assert sorted(row["llm"] for row in usage["by_llm"]) == sorted(PROVIDER_NAMES.values())
    listed = {llm["name"] for llm in api.get("/api/v1/llms").json()["llms"]}
    assert listed == set(PROVIDER_NAMES.values())


@pytest.mark.parametrize("name", sorted(PROVIDER_NAMES.values()))
def test_staff_patch_an_llm_whose_name_has_slashes_at_signs_or_colons(routed, staff_client, name):
    response = staff_client.patch(f"/api/v1/llms/{name}", {"usd_per_query": 0.0042})
    assert response.status_code == 200, response.content
    assert response.json()["name"] == name and response.json()["usd_per_query"] == 0.0042
    assert LLM.objects.get(name=name).usd_per_query == 0.0042
    assert LLM.objects.exclude(name=name).filter(usd_per_query=0.0042).count() == 0


def test_names_with_spaces_or_other_characters_work_percent_encoded(db, staff_client, monkeypatch):
    monkeypatch.setattr("routing.services.jobs._send", lambda job_id: False)
    name = "Mixtral 8x7B (Together) #2 ?x=1 100%"
    created = staff_client.post("/api/v1/llms", {"name": name, "usd_per_query": 0.001})
    assert created.status_code in (201, 202), created.content
    assert created.json()["name"] == name
    updated = staff_client.patch(f"/api/v1/llms/{quote(name, safe='')}", {"usd_per_query": 0.002})
    assert updated.status_code == 200 and updated.json()["name"] == name
    assert LLM.objects.get(name=name).usd_per_query == 0.002
    assert staff_client.patch(f"/api/v1/llms/{quote('meta-llama/nope')}", {"usd_per_query": 1}).status_code == 404


def test_a_profiling_job_is_queued_by_name(routed, staff_client, monkeypatch):
    monkeypatch.setattr("routing.services.jobs._send", lambda job_id: False)
    name = PROVIDER_NAMES["mid-generalist"]
    response = staff_client.post("/api/v1/jobs", {"kind": "profile_llm", "llm": name})
    assert response.status_code == 202, response.content
    assert response.json()["job"]["llm"] == name
    assert staff_client.get("/api/v1/jobs", {"llm": name}).json()[0]["llm"] == name
    assert Job.objects.get().llm.name == name


def test_the_admin_adds_and_edits_an_llm_named_as_providers_do(admin_client, monkeypatch):
    monkeypatch.setattr("routing.services.jobs._send", lambda job_id: False)
    name = "meta-llama/Llama-3.1-8B-Instruct@together:fp8"
    response = admin_client.post("/admin/registry/llm/add/", {"name": name, "is_active": "on", "metadata": "{}"})
    assert response.status_code == 302, response.content[:2000]
    llm = LLM.objects.get(name=name)
    page = admin_client.get(f"/admin/registry/llm/{llm.id}/change/")
    assert page.status_code == 200 and name in page.content.decode()
    refused = admin_client.post(
        "/admin/registry/llm/add/", {"name": "tab\tinside", "is_active": "on", "metadata": "{}"}
    )
    assert refused.status_code == 200 and "Not a valid LLM name" in refused.content.decode()


def test_evaluation_output_and_plot_carry_the_names(imported, tmp_path, capsys):
    result_path, plot_path = tmp_path / "result.json", tmp_path / "curves.png"
    call_command(
        "evaluate",
        "--dataset",
        "provider-names",
        "--strategies",
        "zero,uniroute_kmeans",
        "--params",
        '{"uniroute_kmeans": {"n_clusters": 3}}',
        "--trials",
        "2",
        "--json",
        str(result_path),
        "--plot",
        str(plot_path),
    )
    result = json.loads(result_path.read_text())
    # each split tests on a third of the LLMs: every name seen is one of the data set's, as written
    assert set(result["single_llms"]) <= set(PROVIDER_NAMES.values()) and len(result["single_llms"]) >= 2
    assert plot_path.stat().st_size > 10_000


def test_the_plot_writes_names_literally(tmp_path):
    """Matplotlib reads "$…$" in a label as maths (and fails on what is not valid TeX); names are text."""
    from evaluation.plots import plot_deferral_curves

    names = ["vendor/model$v2", "price $\\nosuchsymbol$ tier", "x" * 150]
    curves = {
        "trial": 0,
        "methods": {"zero": {"cost": [0.0, 0.5], "quality": [0.2, 0.4]}},
        "single_llms": {name: {"cost": 0.1 * i, "quality": 0.3} for i, name in enumerate(names)},
    }
    path = plot_deferral_curves({"curves": curves, "trials": 1, "dataset": "d"}, tmp_path / "p.png")
    assert path.stat().st_size > 10_000
