"""Profiling a new LLM in-process (the service the profile_llm task runs), against the fake server."""

from collections import Counter

import pytest

from registry.models import Outcome
from registry.services import llm_register
from routing.exceptions import RoutingError
from routing.models import LLMProfile, RoutingState
from routing.profiling.client import ProviderConfigurationError, TransientProviderError
from routing.selectors import routers
from routing.services.profiling import ProfilingOptions, llm_profile_run, llms_to_reprofile
from tests.fakes.fake_openai import FakeOpenAI, RawReply
from tests.fixtures.subjects import GOOD_CATEGORY

FAST = {"backoff_seconds": 0.0, "concurrency": 4}


def register_fake(server, name="fake-math"):
    return llm_register(name=name, api_base=server.url, api_model="fake-1", usd_per_mtok_in=0.01, usd_per_mtok_out=0.02)


def test_profiling_grades_and_stores_every_validation_answer_and_makes_the_llm_routable(routing_data):
    validation = list(routing_data.validation_prompts())
    with FakeOpenAI(policy=routing_data.expert_policy()) as server:
        llm = register_fake(server)
        assert "fake-math" not in routers.active_router(max_age_seconds=0).llm_index()
        profile, report = llm_profile_run(llm=llm, options=ProfilingOptions(**FAST))

    outcomes = {o.prompt_id: o for o in Outcome.objects.filter(llm=llm)}
    assert set(outcomes) == {p.id for p in validation}
    for prompt in validation:
        outcome = outcomes[prompt.id]
        assert outcome.source == Outcome.Source.PROFILED
        assert outcome.score == float(prompt.category == GOOD_CATEGORY), outcome.response_text
        assert outcome.latency_ms is not None and outcome.cost_usd > 0 and outcome.input_tokens > 0
    # Garbage — a wrong letter, nonsense, a body that is not JSON — is recorded as incorrect.
    texts = [o.response_text for o in outcomes.values() if o.score == 0]
    assert any("turtles" in t for t in texts) and any("<html>" in t for t in texts)
    assert report.answered == report.asked == len(validation) and report.correct == sum(
        p.category == GOOD_CATEGORY for p in validation
    )
    assert profile.state == routing_data.state and profile.n_validation_outcomes == len(validation)
    assert "fake-math" in routers.active_router(max_age_seconds=0).llm_index()
    assert RoutingState.objects.count() == 1  # no refit


def test_profiling_again_asks_nothing_and_writes_no_outcome(routing_data):
    with FakeOpenAI(policy=routing_data.expert_policy()) as server:
        llm = register_fake(server)
        llm_profile_run(llm=llm, options=ProfilingOptions(**FAST))
        calls, outcomes = len(server.requests), Outcome.objects.count()
        _, report = llm_profile_run(llm=llm, options=ProfilingOptions(**FAST))
    assert len(server.requests) == calls and Outcome.objects.count() == outcomes and report.asked == 0
    assert LLMProfile.objects.filter(llm=llm).count() == 1


def test_a_run_stopped_by_an_outage_keeps_its_answers_and_the_next_run_asks_only_the_rest(routing_data):
    validation_ids = {p.id for p in routing_data.validation_prompts()}
    answer = routing_data.expert_policy()
    served = Counter()

    def flaky(text):  # ten good answers, then down for good
        served["n"] += 1
        return answer(text) if served["n"] <= 10 else RawReply(503, "down")

    with FakeOpenAI(policy=flaky) as server:
        llm = register_fake(server)
        with pytest.raises(TransientProviderError):
            llm_profile_run(llm=llm, options=ProfilingOptions(**{**FAST, "concurrency": 1, "max_attempts": 2}))
    assert Outcome.objects.filter(llm=llm).count() == 10
    first_asked = {r["text"] for r in server.requests if r["status"] == 200}

    with FakeOpenAI(policy=answer) as healthy:
        llm.api_base = healthy.url
        llm.save()
        llm_profile_run(llm=llm, options=ProfilingOptions(**FAST))
    assert set(Outcome.objects.filter(llm=llm).values_list("prompt_id", flat=True)) == validation_ids
    assert Outcome.objects.filter(llm=llm).count() == len(validation_ids)
    assert not first_asked & {r["text"] for r in healthy.requests}  # nothing answered was asked again


def test_the_cost_cap_stops_asking_and_the_llm_is_profiled_from_what_it_answered(routing_data):
    with FakeOpenAI(policy=routing_data.expert_policy()) as server:
        llm = llm_register(name="pricey", api_base=server.url, usd_per_query=0.01)
        profile, report = llm_profile_run(
            llm=llm, options=ProfilingOptions(**{**FAST, "concurrency": 1, "max_cost_usd": 0.05})
        )
    assert report.stopped_by_cost_cap and report.answered == 5 and len(server.requests) == 5
    assert profile.n_validation_outcomes == 5 and report.cost_usd == pytest.approx(0.05)


def test_prompts_the_provider_rejects_get_no_outcome_and_the_rest_are_profiled(routing_data):
    answer = routing_data.expert_policy()
    rejected = {p.text for p in routing_data.validation_prompts()[:3]}
    with FakeOpenAI(
        policy=lambda text: RawReply(400, '{"error": "too long"}') if text in rejected else answer(text)
    ) as server:
        llm = register_fake(server)
        profile, report = llm_profile_run(llm=llm, options=ProfilingOptions(**FAST))
    assert report.rejected == 3 and profile.n_validation_outcomes == len(routing_data.state.validation_prompt_ids) - 3


def test_a_provider_refusing_every_call_fails_with_the_reason(routing_data):
    with FakeOpenAI(policy=lambda text: RawReply(404, '{"error": "model not found"}')) as server:
        llm = register_fake(server)
        with pytest.raises(ProviderConfigurationError, match="404"):
            llm_profile_run(llm=llm, options=ProfilingOptions(**FAST))
        assert len(server.requests) <= FAST["concurrency"]
    assert not Outcome.objects.filter(llm=llm).exists() and not LLMProfile.objects.filter(llm=llm).exists()


def test_a_missing_api_key_variable_is_a_configuration_error(routing_data, monkeypatch):
    monkeypatch.delenv("ROUTERHUB_LLM_KEY_FAKE_FOR_TEST", raising=False)
    with FakeOpenAI(policy=routing_data.expert_policy()) as server:
        llm = llm_register(name="keyed", api_base=server.url, api_key_env="ROUTERHUB_LLM_KEY_FAKE_FOR_TEST")
        with pytest.raises(ProviderConfigurationError, match="ROUTERHUB_LLM_KEY_FAKE_FOR_TEST"):
            llm_profile_run(llm=llm, options=ProfilingOptions(**FAST))
        assert server.requests == []


def test_an_llm_without_an_api_is_profiled_from_its_imported_outcomes(routing_data):
    llm = llm_register(name="offline", usd_per_query=0.001)
    Outcome.objects.bulk_create(Outcome(llm=llm, prompt=p, score=1.0) for p in routing_data.validation_prompts()[:6])
    profile, report = llm_profile_run(llm=llm)
    assert profile.n_validation_outcomes == 6 and report.asked == 0
    assert "offline" in routers.active_router(max_age_seconds=0).llm_index()


def test_an_llm_without_an_api_or_outcomes_cannot_be_profiled(routing_data):
    with pytest.raises(RoutingError, match="no outcome"):
        llm_profile_run(llm=llm_register(name="empty"))


def test_refresh_asks_again_only_profiled_answers_older_than_asked(routing_data):
    from datetime import timedelta

    from django.utils import timezone

    with FakeOpenAI(policy=routing_data.expert_policy()) as server:
        llm = register_fake(server)
        llm_profile_run(llm=llm, options=ProfilingOptions(**FAST))
        old = list(Outcome.objects.filter(llm=llm).order_by("prompt_id")[:4].values_list("id", flat=True))
        Outcome.objects.filter(id__in=old).update(updated_at=timezone.now() - timedelta(days=40))
        calls = len(server.requests)
        _, report = llm_profile_run(llm=llm, options=ProfilingOptions(**FAST, refresh_older_than_days=28))
    assert report.asked == 4 and len(server.requests) == calls + 4
    assert Outcome.objects.filter(llm=llm).count() == len(routing_data.state.validation_prompt_ids)
    assert not Outcome.objects.filter(id__in=old, updated_at__lt=timezone.now() - timedelta(days=1)).exists()


def test_weekly_reprofiling_picks_api_llms_and_llms_whose_outcomes_changed(routing_data):
    with FakeOpenAI(policy=routing_data.expert_policy()) as server:
        api_llm = register_fake(server)
    changed = routing_data.state.profiles.select_related("llm").first().llm
    Outcome.objects.filter(llm=changed, prompt_id=routing_data.state.validation_prompt_ids[0]).delete()
    chosen = {llm.name for llm in llms_to_reprofile(state=routing_data.state)}
    assert chosen == {api_llm.name, changed.name}


def test_unknown_profiling_options_are_refused():
    with pytest.raises(ValueError, match="unknown profiling option"):
        ProfilingOptions.from_arguments({"concurency": 3})
