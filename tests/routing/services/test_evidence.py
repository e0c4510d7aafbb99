"""Feedback that teaches the router: a trusted tenant's quality scores become evidence for the LLM that
answered, and the periodic task moves routing without a refit — bounded per tenant, kept by a refit,
audited. On the synthetic three-subject set (math, law, cooking; one K-means cluster each)."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from registry.embedders import get_embedder
from registry.models import LLM, Prompt
from registry.services import llm_register, prompt_record
from routing.caches import reset_all
from routing.models import Evidence, EvidenceApplication, LLMProfile, RoutingState
from routing.selectors.state import strategy_of
from routing.services.evidence import evidence_record
from routing.services.feedback import PROMPT_SET
from routing.services.state import routing_state_refit
from routing.tasks import apply_evidence
from tests.fixtures.api import ROUTE, ApiClient

pytestmark = pytest.mark.django_db

FAVOURITE = "big-generalist"  # right on 80 % of maths: the choice at λ = 0 before any feedback


@pytest.fixture
def maths(routing_data):
    """The test split's maths questions (never a validation prompt)."""
    return list(
        Prompt.objects.filter(prompt_set=routing_data.prompt_set, category="math", split=Prompt.Split.TEST)
        .order_by("id")
        .values_list("text", flat=True)
    )


def route(client, text) -> dict:
    response = client.post(ROUTE, {"prompt": text, "lambda": 0})
    assert response.status_code == 200, response.content
    return response.json()


def give_feedback(client, texts, score) -> list[dict]:
    """Route each text at λ = 0 and report its quality; the answers."""
    bodies = [route(client, text) for text in texts]
    for body in bodies:
        answer = client.post(f"{ROUTE}/{body['decision_id']}/feedback", {"quality_score": score})
        assert answer.status_code == 200, answer.content
    return bodies


def maths_estimate(state: RoutingState, llm_name: str, maths_text: str) -> float:
    """The LLM's estimated error in the maths cluster under ``state``, from its stored profile."""
    strategy = strategy_of(state)
    embedding = Prompt.objects.filter(text=maths_text).exclude(prompt_set__name=PROMPT_SET).first().embedding
    vector = LLMProfile.objects.get(state=state, llm__name=llm_name).vector
    return float(strategy.predict_loss(np.asarray(embedding)[None, :], np.asarray(vector)[None, :])[0, 0])


def test_a_trusted_tenants_feedback_moves_the_route_within_one_run_and_the_audit_says_what_moved(
    routing_data, make_tenant, maths
):
    tenant, key = make_tenant(name="trusted-co", trusted_for_learning=True)
    client = ApiClient(key)
    probe = maths[-1]
    assert route(client, probe)["llm"]["name"] == FAVOURITE
    state = RoutingState.objects.get(is_active=True)
    before = maths_estimate(state, FAVOURITE, probe)

    # Its answers were wrong on 20 maths questions, says the tenant.
    bodies = give_feedback(client, maths[:20], 0.0)
    assert {body["llm"]["name"] for body in bodies} == {FAVOURITE}
    assert Evidence.objects.filter(tenant=tenant, llm__name=FAVOURITE, score=0.0).count() == 20
    revision = RoutingState.objects.get(id=state.id).revision

    result = apply_evidence()
    reset_all()  # what a web process does on its next second: the state's revision changed

    assert [row["llm"] for row in result["applied"]] == [FAVOURITE]
    assert RoutingState.objects.get(id=state.id).revision == revision + 1
    after = maths_estimate(state, FAVOURITE, probe)
    assert after > before + 0.3  # from ~0.2 towards the evidence's 1.0
    assert route(client, probe)["llm"]["name"] != FAVOURITE  # no refit: the same state routes elsewhere

    application = EvidenceApplication.objects.get(state=state, llm__name=FAVOURITE)
    assert application.reason == EvidenceApplication.Reason.EVIDENCE
    assert application.events == 20 and application.weight == pytest.approx(20.0, abs=0.01)
    assert application.sources == [
        {
            "source": "feedback",
            "tenant": "trusted-co",
            "events": 20,
            "weight": pytest.approx(20.0, abs=0.01),
            "capped": False,
        }
    ]
    assert application.error_before < 0.35 and application.error_after > 0.6
    maths_cluster = bodies[0]["cluster"]
    assert {row["cluster"] for row in application.moved} == {maths_cluster}
    assert all(row["before"] < row["after"] and row["tenant"] == "trusted-co" for row in application.moved)

    # Idempotent: nothing new, nothing done; the same feedback again records nothing new either.
    assert apply_evidence()["applied"] == []
    client.post(f"{ROUTE}/{bodies[0]['decision_id']}/feedback", {"quality_score": 0.0})
    assert apply_evidence()["applied"] == []
    assert RoutingState.objects.get(id=state.id).revision == revision + 1


def test_an_untrusted_tenants_feedback_is_kept_as_an_outcome_and_does_not_move_routing(
    routing_data, make_tenant, maths
):
    _, key = make_tenant(name="anyone")
    client = ApiClient(key)
    probe = maths[-1]
    state = RoutingState.objects.get(is_active=True)
    vector = LLMProfile.objects.get(state=state, llm__name=FAVOURITE).vector

    bodies = give_feedback(client, maths[:20], 0.0)
    result = apply_evidence()
    reset_all()

    assert result["applied"] == [] and Evidence.objects.count() == 0
    assert LLMProfile.objects.get(state=state, llm__name=FAVOURITE).vector == vector
    assert route(client, probe)["llm"]["name"] == FAVOURITE
    assert {body["llm"]["name"] for body in bodies} == {FAVOURITE}


def evidence_prompts(texts) -> list[Prompt]:
    """The prompts a grader would judge: the texts in the feedback prompt set, embedded as routing embeds them."""
    embedder = get_embedder()
    return [prompt_record(prompt_set_name=PROMPT_SET, text=text, embed=embedder.embed_one) for text in texts]


def test_a_tenant_flooding_false_feedback_moves_an_estimate_no_further_than_its_cap(
    routing_data, make_tenant, maths, settings, monkeypatch
):
    settings.ROUTERHUB_EVIDENCE_CAP_PROMPTS = 5.0
    monkeypatch.setattr("routing.selectors.evidence.ROWS_PER_SOURCE", 12)
    flooder, _ = make_tenant(name="flooder", trusted_for_learning=True)
    state = RoutingState.objects.get(is_active=True)
    llm = LLM.objects.get(name=FAVOURITE)
    prompts = evidence_prompts(maths)
    probe = maths[-1]
    before = maths_estimate(state, FAVOURITE, probe)

    for prompt in prompts[:5]:
        evidence_record(llm=llm, prompt=prompt, score=0.0, source="feedback", tenant=flooder)
    apply_evidence()
    at_the_cap = maths_estimate(state, FAVOURITE, probe)
    for prompt in prompts[5:]:
        evidence_record(llm=llm, prompt=prompt, score=0.0, source="feedback", tenant=flooder)
    apply_evidence()
    flooded = maths_estimate(state, FAVOURITE, probe)

    application = EvidenceApplication.objects.filter(state=state, llm=llm).first()
    assert application.evidence_seen == len(prompts) > 20
    assert application.events == 12  # only its newest rows are read; they share the cap all the same
    assert application.weight == pytest.approx(5.0)
    assert apply_evidence()["applied"] == []  # and what was left unread is no "new evidence" next time
    assert application.sources[0]["capped"] is True
    assert at_the_cap > before
    assert flooded == pytest.approx(at_the_cap, abs=0.02)
    # In its cluster of n validation answers under a prior worth a = 1: at most cap / (n + a + cap) of the
    # way from its estimate to the flood's claim (error 1).
    n = sum(1 for p in routing_data.validation_prompts() if p.category == "math")
    assert flooded - before <= (1.0 - before) * 5.0 / (n + 1.0 + 5.0) + 0.02

    # A second trusted tenant has a cap of its own; an untrusted one's rows do not count at all.
    other, _ = make_tenant(name="other", trusted_for_learning=True)
    for prompt in prompts[:5]:
        evidence_record(llm=llm, prompt=prompt, score=0.0, source="feedback", tenant=other)
    apply_evidence()
    assert maths_estimate(state, FAVOURITE, probe) > flooded + 0.05
    other.trusted_for_learning = False
    other.save()
    apply_evidence()  # its evidence withdrawn: the estimate returns to the flooder's alone
    assert maths_estimate(state, FAVOURITE, probe) == pytest.approx(flooded, abs=1e-6)


def test_old_evidence_weighs_less_and_a_refit_keeps_the_evidence(routing_data, make_tenant, maths, settings):
    tenant, _ = make_tenant(name="trusted-co", trusted_for_learning=True)
    llm = LLM.objects.get(name=FAVOURITE)
    prompts = evidence_prompts(maths[:10])
    four_weeks_ago = timezone.now() - timezone.timedelta(days=28)
    for prompt in prompts:
        evidence_record(llm=llm, prompt=prompt, score=0.0, source="feedback", tenant=tenant, observed_at=four_weeks_ago)
    old_state = RoutingState.objects.get(is_active=True)
    apply_evidence()
    application = EvidenceApplication.objects.get(state=old_state, llm=llm)
    assert application.weight == pytest.approx(10 * 0.25, rel=1e-3)  # two half-lives of 14 days
    applied = maths_estimate(old_state, FAVOURITE, maths[-1])

    new_state, _ = routing_state_refit()

    assert new_state.id != old_state.id and new_state.is_active
    assert maths_estimate(new_state, FAVOURITE, maths[-1]) == pytest.approx(applied, abs=0.02)
    carried = EvidenceApplication.objects.get(state=new_state, llm=llm)
    assert carried.reason == EvidenceApplication.Reason.PROFILE and carried.events == 10
    assert carried.error_after > carried.error_before  # measured against the new state's profile without it
    assert apply_evidence()["applied"] == []  # the refit took it in already


def test_evidence_record_refuses_what_cannot_be_evidence_and_keeps_the_latest_judgement(db):
    llm = llm_register(name="judged")
    prompt = evidence_prompts(["What is the derivative of x**2?"])[0]
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        evidence_record(llm=llm, prompt=prompt, score=1.5, source="judge:test")
    with pytest.raises(ValueError, match="source must be 1 to 100 characters"):
        evidence_record(llm=llm, prompt=prompt, score=1.0, source="")
    bare = Prompt.objects.create(prompt_set=prompt.prompt_set, external_id="bare", text="no vector", split="test")
    with pytest.raises(ValueError, match="has no embedding"):
        evidence_record(llm=llm, prompt=bare, score=1.0, source="judge:test")

    now = timezone.now()
    evidence_record(llm=llm, prompt=prompt, score=1.0, source="judge:test", observed_at=now)
    evidence_record(
        llm=llm, prompt=prompt, score=0.0, source="judge:test", observed_at=now - timezone.timedelta(hours=1)
    )
    assert Evidence.objects.get(source="judge:test").score == 1.0  # an older verdict does not replace a newer
    evidence_record(
        llm=llm, prompt=prompt, score=0.5, source="judge:test", observed_at=now + timezone.timedelta(hours=1)
    )
    assert Evidence.objects.get(source="judge:test").score == 0.5


def test_the_task_waits_for_a_fitted_state_and_does_nothing_when_switched_off(db, settings):
    assert apply_evidence() == {"state_version": None, "applied": [], "skipped": "no routing state has been fitted yet"}
    settings.ROUTERHUB_EVIDENCE_ENABLED = False
    assert apply_evidence()["skipped"] == "ROUTERHUB_EVIDENCE_ENABLED is off"


def test_migrate_schedules_the_task_every_thirty_seconds(db):
    # What the data migration leaves (its rows are gone after any test that flushes the database, so the
    # migration's own RunPython code is run again here, on the current models).
    import importlib

    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    migration = importlib.import_module("routing.migrations.0019_apply_evidence_schedule")
    PeriodicTask.objects.filter(name="routerhub: apply new evidence").delete()
    (run_python,) = migration.Migration.operations
    run_python.code(apps, None)
    task = PeriodicTask.objects.get(name="routerhub: apply new evidence")
    assert (task.task, task.interval.every, task.interval.period, task.enabled) == (
        "routing.apply_evidence",
        30,
        "seconds",
        True,
    )


def test_a_knn_state_takes_no_evidence_and_the_task_says_so(routing_data, make_tenant, maths):
    from routing.services.state import routing_state_fit

    tenant, _ = make_tenant(name="trusted-co", trusted_for_learning=True)
    llm = LLM.objects.get(name=FAVOURITE)
    for prompt in evidence_prompts(maths[:3]):
        evidence_record(llm=llm, prompt=prompt, score=0.0, source="feedback", tenant=tenant)
    state = routing_state_fit(prompt_set=routing_data.prompt_set, strategy="knn", params={"k": 5}, tune=False)
    vector = LLMProfile.objects.get(state=state, llm=llm).vector

    assert apply_evidence() == {
        "state_version": state.version,
        "applied": [],
        "skipped": "knn profiles take no evidence",
    }
    assert LLMProfile.objects.get(state=state, llm=llm).vector == vector
    assert not EvidenceApplication.objects.filter(state=state).exists()
