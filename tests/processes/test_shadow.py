"""Shadow evaluation end to end: the gateway (served in a thread) answers the tenant, a real Celery
worker asks the comparison LLM and the judge — the demo upstream, whose demo judge compares answers by
the demo data's correctness — and the shadow budget, never the tenant's, pays for it."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from registry.models import LLM, Outcome, Prompt
from routerhub.demo_upstream import FakeUpstream, demo_answers
from routing import tasks
from routing.caches import reset_all
from routing.models import BudgetPeriod, Decision, ShadowBudget, ShadowEvaluation
from routing.services import shadow
from tests.fixtures.api import sample_prompts
from tests.fixtures.gateway import ranking, routed_decision_ids, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
JUDGE = "DeepSeek-Coder-V2"
COMPARISON = "gemini-1.5-pro-002"


@pytest.fixture
def upstream(api_slice):
    with FakeUpstream(answer=demo_answers(api_slice)) as server:
        yield server


@pytest.fixture
def shadowed(worker, gateway_llms, tenant_and_key):
    tenant, _ = tenant_and_key
    tenant.shadow_share = 1.0
    tenant.shadow_judge_llm = LLM.objects.get(name=JUDGE)
    tenant.shadow_comparison_llm = LLM.objects.get(name=COMPARISON)
    tenant.log_gateway_text = True
    tenant.save()
    reset_all()
    return tenant


def ended(decisions, worker, timeout: float = 30.0) -> list[ShadowEvaluation]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks.send_shadow_evaluations()  # what beat runs every 10 s
        rows = list(ShadowEvaluation.objects.filter(decision_id__in=decisions).select_related("routed_llm"))
        if len(rows) == len(decisions) and all(r.status not in ("pending", "compared") for r in rows):
            return sorted(rows, key=lambda r: decisions.index(str(r.decision_id)))
        time.sleep(0.1)
    pytest.fail(f"shadow evaluations still running after {timeout} s; worker log:\n{worker.log()[-4000:]}")


def correct(llm: LLM, text: str) -> bool:
    return Outcome.objects.get(llm=llm, prompt=Prompt.objects.filter(text=text).first()).score >= 0.5


def test_the_worker_judges_shadowed_exchanges_paid_by_the_shadow_budget_alone(
    shadowed, worker, upstream, openai_client
):
    budget = ShadowBudget.objects.create(limit_usd=Decimal(1))
    prompts = sample_prompts(3)
    decisions = routed_decision_ids(openai_client, prompts)
    rows = ended(decisions, worker)
    comparison = LLM.objects.get(name=COMPARISON)
    for row, text in zip(rows, prompts):
        routed_right, comparison_right = correct(row.routed_llm, text), correct(comparison, text)
        expected = "tie" if routed_right == comparison_right else "win" if routed_right else "loss"
        assert (row.status, row.verdict) == ("judged", expected), row.error
        assert "Demo judge" in row.judge_detail["raw_text"]
        assert row.comparison_text and row.request["messages"][0]["content"] == text  # the tenant logs its text
    # The provider's own record: each prompt asked once of the comparison LLM, and the judge asked.
    asked = [(call.model, call.body["messages"][-1]["content"]) for call in upstream.calls]
    assert [asked.count((COMPARISON, text)) for text in prompts] == [1, 1, 1]
    assert all(any(m == JUDGE and text in t and "<answer_a>" in t for m, t in asked) for text in prompts)
    # The tenant's budget holds its routed calls only; the shadow budget holds the comparison and judge calls.
    routed = sum(Decision.objects.get(id=d).actual_cost_usd for d in decisions)
    assert BudgetPeriod.objects.get(tenant=shadowed).spent_usd == routed
    budget.refresh_from_db()
    assert budget.spent_usd == sum(r.comparison_cost_usd + r.judge_cost_usd for r in rows) > routed


def test_a_spent_shadow_budget_makes_no_shadow_call(shadowed, worker, upstream, openai_client):
    budget = ShadowBudget.objects.create(tenant=shadowed, limit_usd=Decimal("0.000001"))  # below any estimate
    decisions = routed_decision_ids(openai_client, sample_prompts(2))
    rows = ended(decisions, worker)
    assert [(r.status, r.comparison_text, r.comparison_cost_usd, r.reserved_usd) for r in rows] == [
        ("no_budget", "", None, 0)
    ] * 2
    assert "shadow budget has less than" in rows[0].error
    assert {call.model for call in upstream.calls} == {rows[0].routed_llm.name}  # the tenant's calls only
    budget.refresh_from_db()
    assert budget.spent_usd == 0
    assert BudgetPeriod.objects.get(tenant=shadowed).spent_usd == sum(
        Decision.objects.get(id=d).actual_cost_usd for d in decisions
    )


def test_the_worker_compares_with_routings_best_quality_choice_when_the_tenant_names_none(
    shadowed, worker, upstream, openai_client, tenant_and_key
):
    shadowed.shadow_comparison_llm = None
    shadowed.save(update_fields=["shadow_comparison_llm"])
    reset_all()
    budget = ShadowBudget.objects.create(limit_usd=Decimal(1))
    text = sample_prompts(1)[0]
    best = ranking(tenant_and_key[1], messages=[{"role": "user", "content": text}], **{"lambda": 0})[0]
    others = list(LLM.objects.exclude(name=best).values_list("name", flat=True))
    decisions = routed_decision_ids(openai_client, [text], models=others)  # routed away from the best
    [row] = ended(decisions, worker)
    assert (row.status, row.comparison_llm.name) == ("judged", best), row.error
    assert row.routed_llm.name != best
    asked = [(call.model, call.body["messages"][-1]["content"]) for call in upstream.calls]
    assert asked.count((best, text)) == 1  # the worker's choice, asked once
    budget.refresh_from_db()
    assert budget.spent_usd == row.comparison_cost_usd + row.judge_cost_usd > 0


def test_an_evaluation_whose_message_was_lost_is_sent_again_by_the_sweep_and_judged_once(
    shadowed, worker, upstream, openai_client, monkeypatch
):
    budget = ShadowBudget.objects.create(limit_usd=Decimal(1))
    [decision] = routed_decision_ids(openai_client, sample_prompts(1))
    wait_for(lambda: ShadowEvaluation.objects.filter(decision_id=decision).exists())
    row = ShadowEvaluation.objects.get(decision_id=decision)
    assert (row.status, row.sent_at, row.comparison_llm_id) == ("pending", None, None)  # the gateway sent nothing

    real_send = shadow.send
    monkeypatch.setattr(shadow, "send", lambda evaluation_id: True)  # a message the broker then lost
    assert tasks.send_shadow_evaluations() == {"sent": [decision], "not_sent": []}
    monkeypatch.setattr(shadow, "send", real_send)
    assert tasks.send_shadow_evaluations() == {"sent": [], "not_sent": []}  # sent a moment ago
    time.sleep(1.0)
    assert ShadowEvaluation.objects.get(decision_id=decision).status == "pending"  # nobody has it
    long_ago = timezone.now() - timedelta(seconds=shadow.RESEND_AFTER_SECONDS + 1)
    ShadowEvaluation.objects.filter(decision_id=decision).update(sent_at=long_ago)  # a minute on

    assert tasks.send_shadow_evaluations() == {"sent": [decision], "not_sent": []}
    [row] = ended([decision], worker)
    assert (row.status, row.comparison_llm.name) == ("judged", COMPARISON), row.error
    assert tasks.send_shadow_evaluations() == {"sent": [], "not_sent": []}
    assert [call.model for call in upstream.calls].count(COMPARISON) == 1
    budget.refresh_from_db()
    assert budget.spent_usd == row.comparison_cost_usd + row.judge_cost_usd > 0
    assert BudgetPeriod.objects.get(tenant=shadowed).spent_usd == Decision.objects.get(id=decision).actual_cost_usd
