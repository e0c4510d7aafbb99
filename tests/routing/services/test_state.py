"""Routing states in the database: fit, activate, profile a new LLM without refit, reload in-process."""

from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError

from registry.models import LLM, Outcome, Prompt
from registry.services import llm_register, llms_set_active
from routing.caches import reset_all
from routing.models import Job, LLMProfile, RoutingState, StateCentroid
from routing.selectors import routers
from routing.services.state import llm_profile, routing_state_activate, routing_state_fit
from tests.fixtures.slices import imported_slice, write_slice

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("routing") / "slice", prompts=400)


@pytest.fixture
def prompt_set(slice_files):
    yield imported_slice(slice_files)
    reset_all()


def fit(prompt_set, **params):
    return routing_state_fit(prompt_set=prompt_set, strategy="uniroute_kmeans", params={"n_clusters": 4, **params})


def test_fit_stores_centroids_as_vectors_and_profiles_every_llm(prompt_set):
    state = fit(prompt_set)
    assert state.is_active and state.version == 1
    assert StateCentroid.objects.filter(state=state).count() == 4
    centroid = StateCentroid.objects.filter(state=state).first()
    assert np.linalg.norm(np.asarray(centroid.vector)) == pytest.approx(1.0, rel=1e-4)
    assert LLMProfile.objects.filter(state=state).count() == LLM.objects.count() == 29
    assert state.train_llms.count() == 29
    assert len(state.validation_prompt_ids) == Prompt.objects.filter(split="validation").count() > 0


def test_refit_activates_the_new_version_and_deactivates_the_old(prompt_set):
    first = fit(prompt_set)
    second = fit(prompt_set, n_clusters=3)
    first.refresh_from_db()
    assert (first.is_active, second.is_active, second.version) == (False, True, 2)
    assert routers.active_router(max_age_seconds=0).version == 2
    routing_state_activate(state=first)
    assert list(RoutingState.objects.filter(is_active=True)) == [first]
    assert routers.active_router(max_age_seconds=0).version == 1


def test_the_database_allows_only_one_active_state(prompt_set):
    state = fit(prompt_set)
    with pytest.raises(IntegrityError):
        RoutingState.objects.create(
            strategy=state.strategy,
            version=99,
            arrays=state.arrays,
            prompt_set=prompt_set,
            embedder="x",
            is_active=True,
        )


def test_a_new_llm_is_profiled_and_routable_without_refit(prompt_set):
    state = fit(prompt_set)
    router = routers.active_router(max_age_seconds=0)
    assert "newcomer" not in router.llm_index()
    # The newcomer answers exactly the validation prompts of one category correctly.
    validation = list(Prompt.objects.filter(prompt_set=prompt_set, split="validation"))
    category = max({p.category for p in validation}, key=lambda c: sum(p.category == c for p in validation))
    newcomer = llm_register(name="newcomer", usd_per_query=0.0001)
    Outcome.objects.bulk_create(
        Outcome(llm=newcomer, prompt=p, score=float(p.category == category), source="profiled") for p in validation
    )
    arrays_before = bytes(state.arrays)
    profile = llm_profile(llm=newcomer)
    state.refresh_from_db()
    assert bytes(state.arrays) == arrays_before and state.version == 1  # no refit
    assert profile.n_validation_outcomes == len(validation)
    assert profile.validation_error == pytest.approx(1 - np.mean([p.category == category for p in validation]))
    router = routers.active_router(max_age_seconds=0)
    assert router.revision == state.revision
    assert "newcomer" in router.llm_index()
    losses = router.predict_loss(np.asarray(validation[0].embedding))
    assert losses.shape == (1, 30)


def test_deactivated_llms_are_not_routable(prompt_set):
    fit(prompt_set)
    llms_set_active(llms=LLM.objects.filter(name="gemini-1.5-pro-002"), active=False)
    assert "gemini-1.5-pro-002" not in routers.active_router(max_age_seconds=0).llm_index()


def test_no_fitted_state_is_a_clear_error(prompt_set):
    from routing.exceptions import NoActiveRoutingState

    with pytest.raises(NoActiveRoutingState, match="fit_router"):
        routers.active_router(max_age_seconds=0)


def test_fit_router_command_fits_and_reports(prompt_set, capsys):
    call_command("fit_router", "--dataset", "slice", "--strategy", "zero")
    out = capsys.readouterr().out
    assert "Routing state v1: zero on slice, 29 LLM profiles" in out
    router = routers.active_router(max_age_seconds=0)
    # ZeroRouter predicts each LLM's mean validation error for every prompt.
    expected = [p.validation_error for p in LLMProfile.objects.order_by("llm__name")]
    np.testing.assert_allclose(
        router.predict_loss(np.ones(384, dtype=np.float32) / np.sqrt(384))[0], expected, rtol=1e-5
    )


def test_fit_tunes_what_is_not_given_on_the_training_llms_and_stores_the_choice(prompt_set):
    state = fit(prompt_set)
    tuning = state.state["tuning"]
    assert tuning["fixed"] == {"n_clusters": 4} and set(tuning["chosen"]) == {"prior_strength"}
    assert tuning["chosen"]["prior_strength"] in (1.0, 5.0, 20.0, 50.0)
    assert state.params == {**state.params, "n_clusters": 4, "prior_strength": tuning["chosen"]["prior_strength"]}
    assert (
        tuning["folds"] == 3
        and len(tuning["candidates"]) == 4
        and tuning["score"] == max(c["score"] for c in tuning["candidates"])
    )
    assert tuning["criterion"] == "area under the deferral curve"  # every slice LLM has a price
    router = routers.active_router(max_age_seconds=0)
    assert router.params == state.params and router.strategy.prior_strength == tuning["chosen"]["prior_strength"]


def test_a_refit_tunes_again_holding_fixed_what_the_first_fit_was_given(prompt_set):
    from routing.services.state import routing_state_refit

    fit(prompt_set)
    state, _ = routing_state_refit()
    assert state.version == 2 and state.state["tuning"]["fixed"] == {"n_clusters": 4}
    assert state.params["n_clusters"] == 4


def test_without_tuning_the_defaults_are_used_and_a_refit_keeps_them(prompt_set, capsys):
    from routing.services.state import routing_state_refit

    call_command("fit_router", "--dataset", "slice", "--strategy", "uniroute_kmeans", "--no-tuning")
    assert (
        "hyper-parameters {'n_clusters': 10, 'prior_strength': 5.0, 'smoothing': 'per_llm', 'n_init': 3, 'random_state': 0}"
        in capsys.readouterr().out
    )
    state, _ = routing_state_refit()
    assert state.state["tuning"] is None
    assert (state.params["n_clusters"], state.params["prior_strength"]) == (10, 5.0)


def test_fit_router_prints_what_tuning_chose(prompt_set, capsys):
    call_command("fit_router", "--dataset", "slice", "--strategy", "uniroute_kmeans", "--k", "3")
    out = capsys.readouterr().out
    assert "4 candidates × 3 folds of training LLMs" in out and "chosen: {'prior_strength': " in out
    state = RoutingState.objects.get(is_active=True)
    assert (
        f"hyper-parameters {{'n_clusters': 3, 'prior_strength': {state.params['prior_strength']}," in out
    )  # the value chosen


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--dataset", "nope"], "no prompt set named 'nope'"),
        (["--dataset", "slice", "--strategy", "magic"], "unknown strategy 'magic'"),
        (["--dataset", "slice", "--params", "{bad"], "--params is not valid JSON"),
    ],
)
def test_fit_router_command_errors_are_clear(prompt_set, arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("fit_router", *arguments)


def test_knn_routes_one_live_prompt_through_the_hnsw_index_like_the_exact_search(
    prompt_set, monkeypatch, fresh_hnsw_index
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    fresh_hnsw_index()
    routing_state_fit(prompt_set=prompt_set, strategy="knn", params={"k": 5})
    router = routers.active_router(max_age_seconds=0)
    prompts = Prompt.objects.filter(prompt_set=prompt_set, split="test")[:10]
    for prompt in prompts:
        embedding = np.asarray(prompt.embedding, dtype=np.float32)
        monkeypatch.setattr(routers, "KNN_LIVE_INDEX", True)
        with CaptureQueriesContext(connection) as queries:
            from_index = router.predict_loss(embedding)
        assert any("<=>" in q["sql"] for q in queries.captured_queries)  # pgvector's cosine distance
        monkeypatch.setattr(routers, "KNN_LIVE_INDEX", False)
        exact = router.predict_loss(embedding)
        np.testing.assert_allclose(from_index, exact, atol=1e-6)


def test_fit_router_is_recorded_as_a_job_like_a_workers_refit(prompt_set):
    out = StringIO()
    call_command("fit_router", "--dataset", prompt_set.name, "--k", "3", stdout=out)
    job = Job.objects.get()
    assert (job.kind, job.status, job.progress_done, job.progress_total) == ("refit", "succeeded", 1, 1)
    assert job.state.is_active and job.result["state_version"] == job.state.version
    assert job.arguments == {"prompt_set_id": prompt_set.id, "strategy": "uniroute_kmeans", "params": {"n_clusters": 3}}
    assert f"(job #{job.id})" in out.getvalue()


def test_setup_demo_prints_the_dashboard_and_its_first_fit_is_a_job(prompt_set, settings):
    settings.ROUTERHUB_ADMIN_PASSWORD = "demo-pass-123"
    out = StringIO()
    # One strategy, as make run fits before serving (test_state_choice.py fits them all).
    call_command(
        "setup_demo",
        "--dataset",
        prompt_set.name,
        "--strategies",
        "uniroute_kmeans",
        "--base-url",
        "http://127.0.0.1:9999",
        stdout=out,
    )
    assert "Dashboard: http://127.0.0.1:9999/ " in out.getvalue()
    assert list(Job.objects.values_list("kind", "status")) == [("refit", "succeeded")]
