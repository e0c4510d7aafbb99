"""Shadow evaluation without a worker: the gateway (served in a thread) offers the calls its tenant's
share picks, and the evaluation runs here as the task would — against the demo upstream, whose demo
judge compares answers by the demo data's correctness. The worker's run: tests/processes/test_shadow.py."""

import time
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

import pytest
from django.db.models import F
from django.utils import timezone

from registry.models import LLM, Outcome, Prompt
from routerhub.demo_upstream import FakeUpstream, demo_answers
from routing.caches import reset_all
from routing.models import BudgetPeriod, Decision, Evidence, ShadowBudget, ShadowEvaluation
from routing.services import shadow
from tests.fixtures.api import sample_prompts
from tests.fixtures.gateway import ranking, routed_decision_ids, settled, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
JUDGE = "DeepSeek-Coder-V2"
COMPARISON = "gemini-1.5-pro-002"  # 1.25 / 5 USD per million tokens in and out: dearer than what λ = 5000 routes to


@pytest.fixture
def upstream(api_slice):
    """The demo upstream on the slice: each LLM right or wrong as in the data, and a demo judge."""
    with FakeUpstream(answer=demo_answers(api_slice)) as server:
        yield server


@pytest.fixture
def sent(monkeypatch):
    """The evaluations whose task was sent (no broker here: the test runs them itself)."""
    ids: list[UUID] = []
    monkeypatch.setattr(shadow, "send", lambda evaluation_id: ids.append(evaluation_id) or True)
    return ids


def offered() -> list[UUID]:
    """The calls the gateway offered for evaluation (its rows, oldest first)."""
    return list(ShadowEvaluation.objects.order_by("created_at").values_list("decision_id", flat=True))


@pytest.fixture
def shadowed(gateway_llms, tenant_and_key):
    tenant, key = tenant_and_key
    tenant.shadow_share = 1.0
    tenant.shadow_judge_llm = LLM.objects.get(name=JUDGE)
    tenant.shadow_comparison_llm = LLM.objects.get(name=COMPARISON)
    tenant.save()
    reset_all()  # the gateway's cached key holds the tenant as it was
    return tenant


def ask(openai_client, prompts, **routerhub) -> list[UUID]:
    return [UUID(d) for d in routed_decision_ids(openai_client, prompts, **routerhub)]


def correct(llm_id: int, text: str) -> bool:
    return Outcome.objects.get(llm_id=llm_id, prompt=Prompt.objects.filter(text=text).first()).score >= 0.5


def test_picked_is_a_stable_draw_at_the_tenants_share():
    ids = [UUID(int=n * 7919) for n in range(20_000)]
    share = sum(shadow.picked(decision_id=i, share=0.1) for i in ids) / len(ids)
    assert 0.09 < share < 0.11
    assert [shadow.picked(decision_id=i, share=0.1) for i in ids[:50]] == [
        shadow.picked(decision_id=i, share=0.1) for i in ids[:50]
    ]
    assert not any(shadow.picked(decision_id=i, share=0.0) for i in ids[:1000])


def test_an_offered_call_is_judged_once_paid_by_the_shadow_budget_and_its_text_dropped(
    gateway, shadowed, upstream, openai_client, sent, tenant_and_key
):
    budget = ShadowBudget.objects.create(limit_usd=Decimal(1))
    prompts = sample_prompts(4)
    decisions = ask(openai_client, prompts)
    wait_for(lambda: len(offered()) == len(decisions))
    assert sorted(offered()) == sorted(decisions) and sent == []  # the gateway sends no message
    waiting = ShadowEvaluation.objects.get(decision_id=decisions[0])
    assert (
        waiting.status == "pending" and waiting.routed_text and waiting.request["messages"][0]["content"] == prompts[0]
    )
    # The gateway wrote what cannot be had later; the choices are the worker's.
    assert (waiting.comparison_llm_id, waiting.judge_llm_id, waiting.budget_id) == (None, None, None)
    calls_before = len(upstream.calls)
    assert [shadow.shadow_evaluation_run(evaluation_id=d) for d in decisions] == ["judged"] * 4

    wait_for(lambda: len(upstream.calls) >= calls_before + 4 + 7)  # a call is recorded as its answer ends
    asked = [(call.model, call.body["messages"][-1]["content"]) for call in upstream.calls[calls_before:]]
    for decision_id, text in zip(decisions, prompts):
        row = ShadowEvaluation.objects.select_related("decision", "comparison_llm").get(decision_id=decision_id)
        comparison = row.comparison_llm
        routed_right, comparison_right = correct(row.routed_llm_id, text), correct(comparison.id, text)
        expected = "tie" if routed_right == comparison_right else "win" if routed_right else "loss"
        assert (row.status, row.verdict, row.score) == (
            "judged",
            expected,
            {"win": 1.0, "tie": 0.5, "loss": 0.0}[expected],
        )
        assert asked.count((comparison.name, text)) == 1  # the comparison LLM asked once
        assert comparison.name == COMPARISON != row.routed_llm.name
        assert row.comparison_cost_usd > row.routed_cost_usd == row.decision.actual_cost_usd
        assert row.judge_cost_usd > 0 and row.reserved_usd == 0
        assert (row.request, row.routed_text, row.comparison_text) == ({}, "", "")  # the tenant logs no text
    # Each exchange judged in both orders: two judge calls, or one when the two answers are the same
    # text (the demo upstream's reasoning is drawn from a few sentences), the swapped order then a cache hit.
    judged = {
        text: [model for model, asked_text in asked if "<answer_a>" in asked_text and text in asked_text]
        for text in prompts
    }
    assert (
        all(models in ([JUDGE], [JUDGE, JUDGE]) for models in judged.values()) and sum(map(len, judged.values())) >= 7
    )
    rows = ShadowEvaluation.objects.all()
    budget.refresh_from_db()
    assert budget.spent_usd == sum(r.comparison_cost_usd + r.judge_cost_usd for r in rows)
    routed = sum(Decision.objects.get(id=d).actual_cost_usd for d in decisions)
    assert BudgetPeriod.objects.get(tenant=shadowed).spent_usd == routed  # the tenant paid its own calls only

    again = len(upstream.calls)
    assert shadow.shadow_evaluation_run(evaluation_id=decisions[0]) is None  # delivered twice: nothing more
    assert len(upstream.calls) == again
    assert not Evidence.objects.exists()  # a tenant not trusted for learning teaches the router nothing


def test_a_trusted_tenants_verdicts_become_evidence_for_the_routed_llm(
    gateway, shadowed, upstream, openai_client, sent
):
    shadowed.trusted_for_learning = True
    shadowed.save()
    reset_all()
    ShadowBudget.objects.create(limit_usd=Decimal(1))
    prompts = sample_prompts(3)
    decisions = ask(openai_client, prompts)
    wait_for(lambda: len(offered()) == len(decisions))
    for decision_id in decisions:
        shadow.shadow_evaluation_run(evaluation_id=decision_id)
        shadow.shadow_evaluation_run(evaluation_id=decision_id)  # a retried delivery records nothing twice
    recorded = {
        (e.decision_id, e.llm_id, e.prompt.text, e.score, e.source, e.tenant_id)
        for e in Evidence.objects.select_related("prompt")
    }
    expected = {
        (row.decision_id, row.routed_llm_id, text, row.score, f"judge:{JUDGE}", shadowed.id)
        for row, text in ((ShadowEvaluation.objects.get(decision_id=d), t) for d, t in zip(decisions, prompts))
    }
    assert recorded == expected and Evidence.objects.count() == len(decisions)


def test_the_default_comparison_is_the_best_predicted_quality_and_routings_own_choice_a_free_tie(
    gateway, shadowed, upstream, openai_client, sent, tenant_and_key
):
    shadowed.shadow_comparison_llm = None
    shadowed.save(update_fields=["shadow_comparison_llm"])
    reset_all()
    ShadowBudget.objects.create(limit_usd=Decimal(1))
    text = sample_prompts(1)[0]
    messages = [{"role": "user", "content": text}]
    best = ranking(tenant_and_key[1], messages=messages, **{"lambda": 0})[0]
    others = list(LLM.objects.exclude(name=best).values_list("name", flat=True))
    [elsewhere] = ask(openai_client, [text], models=others)  # routed away from the best
    [same] = ask(openai_client, [text], **{"lambda": 0})  # routed to it
    wait_for(lambda: len(offered()) == 2)
    assert set(ShadowEvaluation.objects.values_list("comparison_llm", flat=True)) == {None}  # chosen by the task
    calls = len(upstream.calls)
    assert shadow.shadow_evaluation_run(evaluation_id=same) is None  # nothing to call
    free = ShadowEvaluation.objects.get(decision_id=same)
    assert (free.comparison_llm.name, free.routed_llm.name, free.status, free.verdict) == (best, best, "judged", "tie")
    assert (
        free.comparison_cost_usd == free.routed_cost_usd and free.judge_cost_usd == 0 and len(upstream.calls) == calls
    )
    assert shadow.shadow_evaluation_run(evaluation_id=elsewhere) == "judged"
    judged = ShadowEvaluation.objects.get(decision_id=elsewhere)
    assert judged.comparison_llm.name == best != judged.routed_llm.name
    wait_for(lambda: len(upstream.calls) > calls)
    assert [call.model for call in upstream.calls[calls:]][0] == best  # the comparison asked of the λ = 0 choice


def test_a_worker_that_died_during_the_comparison_call_is_not_followed_by_a_second_call(
    gateway, shadowed, upstream, openai_client, sent
):
    budget = ShadowBudget.objects.create(tenant=shadowed, limit_usd=Decimal(1))
    [decision_id] = ask(openai_client, sample_prompts(1))
    wait_for(offered)
    claimed = shadow.shadow_claim(evaluation_id=decision_id)  # reserved and started … then the worker died
    reserved = claimed.evaluation.reserved_usd
    calls = len(upstream.calls)
    # Within the claim, another delivery (a resent task) may still be in the call: it is left alone.
    assert shadow.shadow_evaluation_run(evaluation_id=decision_id) is None
    assert ShadowEvaluation.objects.get(decision_id=decision_id).status == "pending"
    past = timezone.now() - timedelta(seconds=shadow.CLAIM_SECONDS + 1)
    ShadowEvaluation.objects.filter(decision_id=decision_id).update(claimed_at=past)
    assert shadow.shadow_evaluation_run(evaluation_id=decision_id) is None
    row = ShadowEvaluation.objects.get(decision_id=decision_id)
    assert row.status == "failed" and "not asked twice" in row.error and len(upstream.calls) == calls
    budget.refresh_from_db()
    assert budget.spent_usd == reserved > 0  # what the lost call may have cost stays spent


def test_a_spent_shadow_budget_stops_shadowing_without_a_call(
    gateway, shadowed, upstream, openai_client, sent, monkeypatch
):
    budget = ShadowBudget.objects.create(limit_usd=Decimal("0.000001"))  # less than any evaluation's estimate
    decisions = ask(openai_client, sample_prompts(2))
    wait_for(lambda: len(offered()) == 2)
    calls = len(upstream.calls)
    assert [shadow.shadow_evaluation_run(evaluation_id=d) for d in decisions] == [None, None]
    assert len(upstream.calls) == calls
    assert set(ShadowEvaluation.objects.values_list("status", "routed_text")) == {("no_budget", "")}
    ShadowBudget.objects.filter(id=budget.id).update(spent_usd=F("limit_usd"), updated_at=timezone.now())
    # The web process read the budget as open less than OPEN_RECHECK_SECONDS ago: its next offer is
    # written, and the worker ends it without a call.
    [stale] = ask(openai_client, sample_prompts(3)[2:])
    wait_for(lambda: len(offered()) == 3)
    calls = len(upstream.calls)
    assert shadow.shadow_evaluation_run(evaluation_id=stale) is None and len(upstream.calls) == calls
    assert ShadowEvaluation.objects.get(decision_id=stale).status == "no_budget"
    monkeypatch.setattr(shadow, "OPEN_RECHECK_SECONDS", 0.0)  # read again: spent
    more = ask(openai_client, sample_prompts(4)[3:])
    assert Decision.objects.get(id=more[0]).call_status == "ok"  # the tenant's call answered as ever
    time.sleep(0.5)  # the shadow thread's turn
    assert not ShadowEvaluation.objects.filter(decision_id=more[0]).exists() and len(offered()) == 3
    budget.refresh_from_db()
    assert budget.spent_usd == budget.limit_usd


def test_the_comparison_call_repeats_the_requests_tools_and_response_format(
    gateway, shadowed, upstream, openai_client, sent
):
    ShadowBudget.objects.create(limit_usd=Decimal(1))
    text = sample_prompts(1)[0]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look a term up.",
                "parameters": {"type": "object", "properties": {"term": {"type": "string"}}, "required": ["term"]},
            },
        }
    ]
    raw = openai_client.chat.completions.with_raw_response.create(
        model="routerhub-auto",
        messages=[{"role": "user", "content": text}],
        max_tokens=5000,  # more than a comparison call is allowed
        temperature=0.3,
        tools=tools,
        tool_choice="auto",
        response_format={"type": "json_object"},
        extra_body={"routerhub": {"lambda": 5000.0}},
    )
    settled()
    decision_id = UUID(raw.headers["x-routerhub-decision-id"])
    wait_for(lambda: offered() == [decision_id])
    calls = len(upstream.calls)
    assert shadow.shadow_evaluation_run(evaluation_id=decision_id) == "judged"
    wait_for(lambda: len(upstream.calls) > calls)
    [comparison] = [call.body for call in upstream.calls[calls:] if call.model == COMPARISON]
    assert comparison["messages"] == [{"role": "user", "content": text}]
    assert (comparison["tools"], comparison["tool_choice"], comparison["response_format"]) == (
        tools,
        "auto",
        {"type": "json_object"},
    )
    assert (comparison["temperature"], comparison["max_tokens"]) == (0.3, shadow.COMPARISON_MAX_TOKENS)
    assert ShadowEvaluation.objects.get(decision_id=decision_id).verdict in ("win", "tie", "loss")


def test_the_sweep_sends_each_offer_once_and_again_once_when_its_message_was_lost(
    gateway, shadowed, upstream, openai_client, sent
):
    from routing import tasks

    budget = ShadowBudget.objects.create(limit_usd=Decimal(1))
    [offer] = ask(openai_client, sample_prompts(1))
    wait_for(lambda: offered() == [offer])
    assert sent == []  # the gateway wrote the row and sent nothing
    assert tasks.send_shadow_evaluations() == {"sent": [str(offer)], "not_sent": []}
    assert tasks.send_shadow_evaluations() == {"sent": [], "not_sent": []}  # sent once
    # Its message lost (a broker restarted without persistence): a minute on, the sweep sends it again, once.
    long_ago = timezone.now() - timedelta(seconds=shadow.RESEND_AFTER_SECONDS + 1)
    ShadowEvaluation.objects.filter(decision_id=offer).update(sent_at=long_ago)
    assert tasks.send_shadow_evaluations() == {"sent": [str(offer)], "not_sent": []}
    assert tasks.send_shadow_evaluations() == {"sent": [], "not_sent": []}
    assert sent == [offer, offer]

    calls = len(upstream.calls)
    # Both messages delivered (the lost one turned up after all): one evaluation, one comparison call.
    assert [shadow.shadow_evaluation_run(evaluation_id=evaluation_id) for evaluation_id in sent] == ["judged", None]
    wait_for(lambda: len(upstream.calls) > calls)
    row = ShadowEvaluation.objects.get(decision_id=offer)
    assert row.status == "judged"
    assert [call.model for call in upstream.calls[calls:]].count(COMPARISON) == 1
    budget.refresh_from_db()
    assert budget.spent_usd == row.comparison_cost_usd + row.judge_cost_usd > 0
    ShadowEvaluation.objects.filter(decision_id=offer).update(sent_at=long_ago)
    assert tasks.send_shadow_evaluations() == {"sent": [], "not_sent": []}  # judged: nothing to send


def test_the_sweep_leaves_an_evaluation_unsent_while_the_broker_is_down(
    gateway, shadowed, upstream, openai_client, monkeypatch
):
    from routing import tasks

    ShadowBudget.objects.create(limit_usd=Decimal(1))
    [offer] = ask(openai_client, sample_prompts(1))
    wait_for(lambda: offered() == [offer])

    def unreachable(*args, **kwargs):
        raise ConnectionError("the broker is down")

    monkeypatch.setattr(shadow.current_app, "send_task", unreachable)
    assert tasks.send_shadow_evaluations() == {"sent": [], "not_sent": [str(offer)]}
    row = ShadowEvaluation.objects.get(decision_id=offer)
    assert row.status == "pending" and row.sent_at is not None  # tried again once RESEND_AFTER_SECONDS have passed


def test_the_sweep_is_a_default_beat_schedule():
    import importlib

    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    migration = importlib.import_module("routing.migrations.0022_shadow_choice_in_worker")
    PeriodicTask.objects.filter(task="routing.send_shadow_evaluations").delete()
    run_python = migration.Migration.operations[-1]
    run_python.code(apps, None)
    task = PeriodicTask.objects.get(task="routing.send_shadow_evaluations")
    assert (task.enabled, task.interval.every, task.interval.period) == (True, 10, "seconds")


def test_the_comparison_request_keeps_the_conversation_options_and_a_bounded_max_tokens():
    body = {
        "model": "x",
        "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 20,
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": None,
        "stream": True,
        "n": 3,
        "logit_bias": {"1": 5},
    }
    assert shadow.comparison_request(body) == {
        "messages": body["messages"],
        "tools": body["tools"],
        "max_tokens": 20,
    }
    assert shadow.comparison_request({"messages": []})["max_tokens"] == shadow.COMPARISON_MAX_TOKENS


def test_a_tenant_without_a_judge_is_not_offered_and_a_judge_that_cannot_be_called_makes_no_call(
    gateway, shadowed, upstream, openai_client, sent, settings
):
    shadowed.shadow_judge_llm = None
    shadowed.save(update_fields=["shadow_judge_llm"])
    settings.ROUTERHUB_JUDGE_LLM = ""
    reset_all()
    budget = ShadowBudget.objects.create(limit_usd=Decimal(1))
    [unjudged] = ask(openai_client, sample_prompts(1))
    time.sleep(0.5)  # the shadow thread's turn
    assert offered() == []

    settings.ROUTERHUB_JUDGE_LLM = "no-such-llm"  # named, but routerhub cannot call it
    reset_all()
    [named] = ask(openai_client, sample_prompts(2)[1:])
    wait_for(lambda: offered() == [named])
    calls = len(upstream.calls)
    assert shadow.shadow_evaluation_run(evaluation_id=named) is None
    row = ShadowEvaluation.objects.get(decision_id=named)
    assert (row.status, row.comparison_llm_id, row.reserved_usd) == ("failed", None, 0) and "judge" in row.error
    assert len(upstream.calls) == calls
    budget.refresh_from_db()
    assert budget.spent_usd == 0
