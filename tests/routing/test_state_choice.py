"""The demo fits every strategy, tuned, and activates the universal one the cross-validation ranks best."""

import pytest
from django.core.management import call_command

from routing.caches import reset_all
from routing.models import Job, RoutingState
from routing.strategies import STRATEGIES
from tests.fixtures.api import ApiClient
from tests.fixtures.slices import imported_slice, write_slice

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def slice_files(tmp_path_factory):
    # Ten LLMs still make three folds of three or four for the cross-validation, and their scores differ
    # (no tie decides the choice); each strategy is tuned, fitted and profiled per LLM, so every LLM
    # more costs each fit.
    return write_slice(tmp_path_factory.mktemp("choice") / "slice", prompts=300, llms=10)


@pytest.fixture
def prompt_set(slice_files):
    yield imported_slice(slice_files)
    reset_all()


def test_setup_demo_fits_one_strategy_then_the_rest_and_activates_the_best_by_cross_validation(
    prompt_set, settings, tmp_path, capsys
):
    """make run's order: UniRoute K-means before the service starts, every other strategy after it in
    the background (--fit-only), whose end activates the best of all by cross-validation."""
    settings.BASE_DIR = tmp_path
    call_command("setup_demo", "--dataset", "slice", "--strategies", "uniroute_kmeans", "--base-url", "http://x")
    output = capsys.readouterr().out
    assert RoutingState.objects.get(is_active=True).strategy == "uniroute_kmeans"
    assert set(RoutingState.objects.values_list("strategy", flat=True)) == {"uniroute_kmeans"}
    key = output.split("new API key (shown once): ")[1].split()[0]

    call_command("setup_demo", "--dataset", "slice", "--fit-only")
    output = capsys.readouterr().out
    assert "API key" not in output and "password" not in output  # secrets are printed by the first run only
    states = {state.strategy: state for state in RoutingState.objects.all()}
    assert set(states) == set(STRATEGIES)
    scores = {name: state.state["tuning"]["score"] for name, state in states.items()}
    universal = {name: score for name, score in scores.items() if STRATEGIES[name].universal}
    assert scores["routoo_predictor"] is None  # never activated: no cross-validation spent on its score
    active = RoutingState.objects.get(is_active=True)
    assert active.strategy == max(universal, key=universal.get)  # K-means, fitted first, competed too
    assert f"Active router: v{active.version} {active.strategy}" in output
    # make run waits for K-means, and --fit-only's fits follow: both use the demo budget, so their
    # cross-validated scores are comparable, and say so
    assert {state.state["tuning"]["budget"] for state in states.values()} == {"demo"}
    assert f"{len(STRATEGIES) - 1} strategies fitted in " in output and "with the demo tuning budget" in output

    client = ApiClient(key)
    for name in STRATEGIES:  # every strategy answers, not only the active one
        body = client.route(strategy=name).json()
        assert body["strategy"] == name and body["strategy_params"] == states[name].params

    # A background fit killed mid-way leaves its Job running; a later run with nothing to fit still
    # starts (no Job), and nothing is refitted or switched.
    Job.objects.create(kind=Job.Kind.REFIT, status=Job.Status.RUNNING, arguments={"prompt_set_id": prompt_set.id})
    call_command("setup_demo", "--dataset", "slice", "--fit-only")
    call_command("setup_demo", "--dataset", "slice", "--strategies", "uniroute_kmeans", "--base-url", "http://x")
    assert RoutingState.objects.count() == len(STRATEGIES)
    assert RoutingState.objects.get(is_active=True).id == active.id
    assert capsys.readouterr().out.count("Every strategy asked for is fitted on slice already") == 2


def test_fit_router_auto_fits_and_activates_the_strategy_with_the_best_cross_validated_score(prompt_set, capsys):
    call_command("fit_router", "--dataset", "slice", "--strategy", "auto")
    output = capsys.readouterr().out
    states = {state.strategy: state for state in RoutingState.objects.all()}
    assert set(states) == {name for name, strategy in STRATEGIES.items() if strategy.universal}
    scores = {name: state.state["tuning"]["score"] for name, state in states.items()}
    assert all(score is not None for score in scores.values())
    winner = next(name for name in STRATEGIES if scores.get(name) == max(scores.values()))  # first of ties
    assert f"auto chose {winner} (cross-validated score {scores[winner]:.4f})" in output
    for name, score in scores.items():  # every candidate's score is printed, the winner marked
        assert any(line.startswith(name) and f"{score:.4f}" in line for line in output.splitlines())
    assert f"{winner}  " in output.split("← auto")[0].splitlines()[-1]
    active = RoutingState.objects.get(is_active=True)
    assert active.strategy == winner and active.id == states[winner].id
    assert active.state["tuning"]["budget"] == "full"
    job = Job.objects.get()
    assert (job.status, job.arguments["strategy"], job.result["strategy"]) == ("succeeded", "auto", winner)


def test_fit_router_auto_refuses_hyper_parameters(prompt_set):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="do not apply to auto"):
        call_command("fit_router", "--dataset", "slice", "--strategy", "auto", "--k", "3")
    assert not RoutingState.objects.exists()
