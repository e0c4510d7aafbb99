"""End to end: a tenant's traffic through the real gateway → a validation set built from its logs →
every LLM profiled on it by a real Celery worker, graded by a judge → a new routing state that the
route API routes with.

The upstream is a fake OpenAI-compatible server (in a thread): each LLM answers the right letter on
its own subjects and a wrong one elsewhere, and the judge model scores a right letter 10 and a wrong
one 2 (``tests/fixtures/traffic.experts_and_judge``).
"""

from __future__ import annotations

import re
from io import StringIO

import httpx
import pytest
from django.core.management import call_command

from registry.models import LLM, Outcome, Prompt, PromptSet
from registry.services import llm_register
from routerhub.demo_upstream import FakeUpstream
from routing.models import Decision, Job, JudgeVerdict, RoutingState, Tenant
from routing.services import tenancy
from tests.fixtures.gateway import settled
from tests.fixtures.subjects import load_routing_data
from tests.fixtures.traffic import experts_and_judge
from tests.processes.test_worker_e2e import route, wait_for_job, wait_until

pytestmark = pytest.mark.slow
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
# Who is right where: one perfect LLM on math (cheap, new), the rest as their names say.
GOOD = {
    "fake-math": {"math"},
    "law-specialist": {"law"},
    "mid-generalist": {"cooking"},
    "big-generalist": {"law", "cooking"},
    "small": set(),
}
PER_SUBJECT = 8  # logged calls per subject


def test_logged_traffic_becomes_a_judged_validation_set_and_a_routing_state_that_routes(worker, gateway, subjects_data):
    from django.db.models import F

    data = load_routing_data(subjects_data)
    questions = {p.text: (p.answer, p.category) for p in Prompt.objects.filter(prompt_set=data.prompt_set)}
    tenant = Tenant.objects.create(name="acme", budget_usd=100, log_gateway_text=True)
    key = tenancy.api_key_create(tenant=tenant, name="e2e").secret

    with FakeUpstream(answer=experts_and_judge(questions, good=GOOD, judge="judge")) as upstream:
        LLM.objects.update(api_base=upstream.url, api_model=F("name"))
        llm_register(
            name="fake-math", api_base=upstream.url, api_model="fake-math", usd_per_mtok_in=0.05, usd_per_mtok_out=0.05
        )
        llm_register(
            name="judge",
            api_base=upstream.url,
            api_model="judge",
            usd_per_mtok_in=1.0,
            usd_per_mtok_out=2.0,
            is_active=False,
        )

        # The tenant's traffic, through the gateway: train-split questions (the state was fitted on
        # them; the test split is kept to check routing), a retry, and prompts carrying an e-mail.
        traffic = []
        for category in ("math", "law", "cooking"):
            rows = Prompt.objects.filter(prompt_set=data.prompt_set, split="train", category=category).order_by("id")
            traffic += list(rows.values_list("text", flat=True)[:PER_SUBJECT])
        traffic += traffic[:2]  # retries
        traffic[3] += "\nSend the answer to jane.roe@example.com"
        with httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            for text in traffic:
                answer = client.post(
                    "/v1/chat/completions",
                    json={"model": "routerhub-auto", "messages": [{"role": "user", "content": text}]},
                )
                assert answer.status_code == 200, answer.text
        settled()
        assert Decision.objects.filter(tenant=tenant, exchange__isnull=False).count() == len(traffic)
        calls_before_profiling = len(upstream.calls)

        out = StringIO()
        call_command(
            "build_validation_set",
            "--from-gateway-logs",
            "--tenant=acme",
            "--size=18",
            "--name=acme-traffic",
            "--judge=judge",
            "--profile",
            "--yes",
            "--queue",
            "--activate",
            stdout=out,
        )
        printed = out.getvalue()
        job = wait_for_job(Job.objects.get(kind=Job.Kind.PROFILE_VALIDATION_SET).id, worker)
        profiling_calls = upstream.calls[calls_before_profiling:]

    # The build: 26 logged calls, 2 retries dropped, redacted, 18 chosen over the three subjects.
    assert f"{len(traffic)} logged calls, {len(traffic)} with a prompt" in printed
    assert "Cost estimate of profiling every active LLM with an API on acme-traffic:" in printed
    assert re.search(r"total\s+90\s", printed)  # 18 prompts × 5 LLMs
    prompt_set = PromptSet.objects.get(name="acme-traffic")
    texts = list(prompt_set.prompts.values_list("text", flat=True))
    assert len(texts) == 18 and not any(EMAIL.search(t) for t in texts)
    assert any(t.endswith("Send the answer to [email]") for t in texts)
    assert not any("jane.roe" in str(call.body) for call in profiling_calls)  # never sent on either

    # The job: one answer per LLM and prompt, each judged (cached verdicts aside), one routing state.
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert (job.progress_done, job.progress_total) == (90, 90)
    answers = [c for c in profiling_calls if c.model != "judge"]
    assert len(answers) == 90 and Outcome.objects.filter(prompt__prompt_set=prompt_set).count() == 90
    verdicts = [c for c in profiling_calls if c.model == "judge"]
    assert len(verdicts) == JudgeVerdict.objects.count() and job.result["calls"] == 90 + len(verdicts)
    assert job.result["cost_usd"] > 0 and not job.result["stopped_by_cost_cap"]
    state = RoutingState.objects.get(is_active=True)
    assert (state.version, state.validation_set_id, job.state_id) == (2, prompt_set.id, state.id)
    assert set(state.profiles.values_list("llm__name", flat=True)) == set(GOOD)

    # The route API routes with it: fake-math, profiled only on the traffic set, takes math prompts.
    from django.test import Client

    client = Client()
    wait_until(lambda: route(client, key, _test_prompt(data, "math")) == "fake-math", timeout=5, what="the new state")
    for category in ("math", "law", "cooking"):
        chosen = {route(client, key, p.text) for p in _test_prompts(data, category)}
        assert (chosen == {"fake-math"}) if category == "math" else ("fake-math" not in chosen), (category, chosen)
    assert Decision.objects.filter(tenant=tenant, state_version=2).exists()


def _test_prompts(data, category: str):
    return list(Prompt.objects.filter(prompt_set=data.prompt_set, split="test", category=category).order_by("id")[:8])


def _test_prompt(data, category: str) -> str:
    return _test_prompts(data, category)[0].text
