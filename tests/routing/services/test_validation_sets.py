"""Validation sets built from logged gateway traffic: redaction before storage, near-duplicates,
stratification over the active state's clusters, and the errors a user sees."""

from __future__ import annotations

import re
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.db.models import Avg
from django.utils import timezone

from registry.embedders import get_embedder
from registry.models import LLM, Outcome, Prompt, PromptSet
from registry.services import llm_register
from routing.models import Job, JudgeVerdict, RoutingState
from routing.redaction import mask_personal_data
from routing.selectors.state import strategy_of
from routing.services.tenancy import tenant_create
from routing.services.validation_sets import (
    ValidationSetError,
    validation_set_build,
    validation_set_estimate,
    validation_set_profile,
)
from tests.fixtures.traffic import experts_and_judge, log_traffic

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


@pytest.fixture
def judge(db):
    return llm_register(name="judge-llm", api_base="http://127.0.0.1:9/v1", usd_per_mtok_in=1.0, usd_per_mtok_out=2.0)


@pytest.fixture
def tenant(db):
    tenant = tenant_create(name="acme", budget_usd="100")
    tenant.log_gateway_text = True
    tenant.save(update_fields=["log_gateway_text"])
    return tenant


def subject_prompts(routing_data, category: str, n: int) -> list[str]:
    """``n`` test-split questions of a subject (the state was fitted on the train split)."""
    rows = Prompt.objects.filter(prompt_set=routing_data.prompt_set, split="test", category=category).order_by("id")
    texts = list(rows.values_list("text", flat=True)[:n])
    assert len(texts) == n
    return texts


def build(tenant, judge, **options):
    return validation_set_build(tenant=tenant, judge_llm=judge, **{"name": "acme-traffic", "size": 12, **options})


def test_prompts_are_redacted_before_the_set_stores_them_text_and_embedding(routing_data, tenant, judge, settings):
    llm = LLM.objects.get(name="small")
    texts = [
        f"{text}\nReply to maria.lopez{i}@example.com or call +1 (415) 555-{2000 + i}; token sk-{'a1b2' * 6}{i:02d}"
        for i, text in enumerate(subject_prompts(routing_data, "law", 8))
    ]
    log_traffic(tenant=tenant, texts=texts, llm=llm)

    prompt_set, report = build(tenant, judge, size=8)

    stored = list(Prompt.objects.filter(prompt_set=prompt_set).order_by("id"))
    assert len(stored) == 8 and report.redacted == 8
    for prompt in stored:
        assert not EMAIL.search(prompt.text) and "555-" not in prompt.text and "sk-" not in prompt.text
        assert prompt.text.endswith("Reply to [email] or call [phone]; token [key]")
        # The embedding is the redacted text's: nothing derived from the masked parts is kept either.
        assert np.allclose(prompt.embedding, get_embedder().embed_one(prompt.text), atol=1e-5)
        assert prompt.text_sha256 and prompt.answer == "" and prompt.split == "validation"
    assert (prompt_set.role, prompt_set.metadata["grader"], prompt_set.metadata["judge_llm"]) == (
        "validation",
        "judge",
        "judge-llm",
    )

    # Another redactor, named by the setting, applies to the next set built.
    settings.ROUTERHUB_VALIDATION_REDACTOR = "tests.routing.services.test_validation_sets.shout"
    other, _ = build(tenant, judge, size=8, name="acme-shouted")
    assert all(t.startswith("REDACTED: ") for t in other.prompts.values_list("text", flat=True))


def shout(text: str) -> str:
    return "REDACTED: " + text


def test_near_duplicates_and_repeats_are_dropped(routing_data, tenant, judge, settings):
    settings.ROUTERHUB_VALIDATION_DUPLICATE_COSINE = 0.9
    originals = subject_prompts(routing_data, "math", 10)
    # Retries (the same text again) and templated variants (one word added): the traffic of one question.
    traffic = originals + originals[:3] + [text + " please" for text in originals[3:7]]
    log_traffic(tenant=tenant, texts=traffic, llm=LLM.objects.get(name="small"))

    prompt_set, report = build(tenant, judge, size=10)

    assert (report.logged_calls, report.exact_repeats, report.near_duplicates, report.distinct) == (17, 3, 4, 10)
    vectors = np.asarray([p.embedding for p in prompt_set.prompts.all()], dtype=np.float32)
    similarity = vectors @ vectors.T
    assert similarity[~np.eye(len(vectors), dtype=bool)].max() < 0.9
    kept = set(prompt_set.prompts.values_list("text", flat=True))
    assert len(kept) == 10 and all(any(k.startswith(o) for k in kept) for o in originals)


def test_the_sample_covers_every_cluster_the_traffic_reaches_even_a_rare_one(routing_data, tenant, judge):
    llm = LLM.objects.get(name="small")
    traffic = {"math": 30, "law": 6, "cooking": 2}  # skewed: cooking is 5 % of the traffic
    for category, n in traffic.items():
        log_traffic(tenant=tenant, texts=subject_prompts(routing_data, category, n), llm=llm)

    prompt_set, report = build(tenant, judge, size=12)

    strategy = strategy_of(routing_data.state)
    stored = list(prompt_set.prompts.all())
    clusters = strategy.cluster_of(np.asarray([p.embedding for p in stored], dtype=np.float32))
    assert [p.metadata["cluster"] for p in stored] == clusters.tolist()
    cluster_of_category = {
        c: int(strategy.cluster_of(np.asarray([get_embedder().embed_one(subject_prompts(routing_data, c, 1)[0])]))[0])
        for c in traffic
    }
    counts = {c: int((clusters == k).sum()) for c, k in cluster_of_category.items()}
    assert sum(counts.values()) == 12 and min(counts.values()) >= 1
    assert counts["math"] > counts["law"] >= counts["cooking"]  # the rest follows the traffic
    assert report.clusters_reached == report.clusters_covered == 3


def test_the_command_prints_its_progress_and_the_errors_name_what_is_wrong(routing_data, tenant, judge):
    log_traffic(tenant=tenant, texts=subject_prompts(routing_data, "law", 9), llm=LLM.objects.get(name="small"))
    out = StringIO()
    call_command(
        "build_validation_set",
        "--from-gateway-logs",
        "--tenant=acme",
        "--size=6",
        "--name=acme-val",
        "--judge=judge-llm",
        stdout=out,
    )
    text = out.getvalue()
    assert "9 logged calls, 9 with a prompt" in text
    assert "Validation set 'acme-val': 6 prompts, graded by the judge judge-llm" in text
    assert PromptSet.objects.get(name="acme-val").prompts.count() == 6

    with pytest.raises(ValidationSetError, match="logged only 9 distinct prompts, fewer than the 12 asked"):
        build(tenant, judge, size=12)
    with pytest.raises(ValidationSetError, match="a prompt set named 'acme-val' exists already"):
        build(tenant, judge, size=3, name="acme-val")
    quiet = tenant_create(name="quiet-co", budget_usd="10")
    with pytest.raises(ValidationSetError, match="tenant 'quiet-co' does not log gateway text"):
        build(quiet, judge)
    assert not PromptSet.objects.filter(name="acme-traffic").exists()
    tenant_create(name="silent", budget_usd="10")
    with pytest.raises(CommandError, match="tenant 'silent' does not log gateway text"):
        call_command(
            "build_validation_set",
            "--from-gateway-logs",
            "--tenant=silent",
            "--size=6",
            "--name=x",
            "--judge=judge-llm",
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ana@example.org today", "write to [email] today"),
        ("call +44 20 7946 0958 or 415-555-2671", "call [phone] or [phone]"),
        ("key sk-proj-ABCDEFGHijklmnop12345678 leaked", "key [key] leaked"),
        ("Authorization: Bearer abcdefABCDEF0123456789", "Authorization: Bearer [key]"),
        ("digest 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b", "digest [key]"),
        # What a question needs stays: dates, numbers, decimals.
        ("On 2024-01-31, is 12345678 or 3.14159265 larger than 1,000,000?", None),
        # MMLU-Pro's tables, year ranges, masses and rules: not phone numbers, not keys.
        ("Output: 95 5950 6000 255 241 in 1837-1843; mass 238.0508; 13.4425 11.7056", None),
        ("House--------------------------------------------------------------LOT3", None),
    ],
)
def test_the_built_in_redactor(text, expected):
    assert mask_personal_data(text) == (expected if expected is not None else text)


# --- the profiling job: estimate, one job over every LLM, the cost cap, the state it activates -------


@pytest.fixture
def experts(routing_data, judge):
    """Every imported LLM answers at a fake upstream (right on its categories), graded by the fake judge."""
    from django.db.models import F

    from routerhub.demo_upstream import FakeUpstream

    questions = {p.text: (p.answer, p.category) for p in Prompt.objects.filter(prompt_set=routing_data.prompt_set)}
    good = {
        "big-generalist": {"math", "law", "cooking"},
        "mid-generalist": {"math", "cooking"},
        "law-specialist": {"law"},
        "small": set(),
    }
    with FakeUpstream(answer=experts_and_judge(questions, good=good, judge="judge-llm")) as upstream:
        LLM.objects.update(api_base=upstream.url, api_model=F("name"))
        LLM.objects.filter(name="judge-llm").update(is_active=False)  # grades, is not routed
        yield upstream


def test_one_job_profiles_every_llm_with_the_judge_within_its_estimate_and_activates_a_state(
    routing_data, tenant, judge, experts
):
    llm = LLM.objects.get(name="small")
    for category in ("math", "law", "cooking"):
        log_traffic(tenant=tenant, texts=subject_prompts(routing_data, category, 6), llm=llm)
    prompt_set, _ = build(tenant, judge, size=12)

    estimate = validation_set_estimate(prompt_set=prompt_set)
    assert [(r.llm, r.prompts) for r in estimate.rows] == [
        ("big-generalist", 12),
        ("law-specialist", 12),
        ("mid-generalist", 12),
        ("small", 12),
    ]
    assert estimate.calls == 96 and estimate.total_usd > 0

    started = timezone.now()
    report, state = validation_set_profile(prompt_set=prompt_set, max_cost_usd=None, activate=True, spent_since=started)

    answers = [c for c in experts.calls if c.model != "judge-llm"]
    verdicts = [c for c in experts.calls if c.model == "judge-llm"]
    assert len(answers) == 48  # each LLM asked each prompt once
    # A verdict is cached by (judge, prompt, answer): on each prompt the big generalist's right letter
    # and the small LLM's wrong one are judged once each, and the two others answer one of those.
    assert len(verdicts) == 24 and report.calls == 72
    assert JudgeVerdict.objects.count() == 24
    scores = dict(
        Outcome.objects.filter(prompt__prompt_set=prompt_set)
        .values("llm__name")
        .annotate(mean=Avg("score"))
        .values_list("llm__name", "mean")
    )
    assert scores == {
        "big-generalist": 1.0,
        "mid-generalist": pytest.approx(8 / 12 + 4 / 12 / 9),
        "law-specialist": pytest.approx(4 / 12 + 8 / 12 / 9),
        "small": pytest.approx(1 / 9),
    }
    spent = sum(o.cost_usd for o in Outcome.objects.filter(prompt__prompt_set=prompt_set)) + sum(
        JudgeVerdict.objects.values_list("cost_usd", flat=True)
    )
    assert report.cost_usd == pytest.approx(spent) and 0 < report.cost_usd <= estimate.total_usd * 1.5

    assert state.is_active and state.version == 2 and state.validation_set == prompt_set
    assert sorted(state.validation_prompt_ids) == sorted(prompt_set.prompts.values_list("id", flat=True))
    assert set(state.profiles.values_list("llm__name", flat=True)) == set(scores)


def test_the_cost_cap_stops_the_job_cleanly_keeping_what_was_graded(routing_data, tenant, judge, experts):
    llm = LLM.objects.get(name="small")
    log_traffic(tenant=tenant, texts=subject_prompts(routing_data, "law", 10), llm=llm)
    prompt_set, _ = build(tenant, judge, size=10)
    cap = 0.003  # USD: part of what the first LLM (big-generalist, 10 USD per million tokens) costs

    report, state = validation_set_profile(
        prompt_set=prompt_set,
        max_cost_usd=cap,
        activate=True,
        spent_since=timezone.now(),
        profiling_arguments={"concurrency": 1},  # one call at a time: the cap is checked before each
    )

    assert report.stopped_by_cost_cap and state is None
    assert [r["llm"] for r in report.llms] == ["big-generalist"]  # the LLMs after it are not asked
    assert RoutingState.objects.get(is_active=True).version == 1  # nothing activated on partial profiles
    graded = Outcome.objects.filter(prompt__prompt_set=prompt_set)
    assert 0 < graded.count() < 10 and set(graded.values_list("llm__name", flat=True)) == {"big-generalist"}
    # What was graded is kept, with its verdicts; the last call started below the cap.
    costs = [*graded.values_list("cost_usd", flat=True), *JudgeVerdict.objects.values_list("cost_usd", flat=True)]
    assert report.cost_usd == pytest.approx(sum(costs))
    assert cap <= report.cost_usd <= cap + max(costs) * 2


def test_the_tenant_admin_action_builds_the_set_shows_the_estimate_and_queues_the_job(
    routing_data, tenant, judge, experts, admin_client, settings
):
    log_traffic(tenant=tenant, texts=subject_prompts(routing_data, "math", 7), llm=LLM.objects.get(name="small"))
    LLM.objects.filter(name="judge-llm").update(is_active=True)  # offered as a judge: active LLMs with an API
    changelist = "/admin/routing/tenant/"
    action = {"action": "build_validation_set", "_selected_action": [tenant.id]}

    settings.ROUTERHUB_JUDGE_LLM = "judge-llm"
    form = admin_client.post(changelist, action).content.decode()
    assert "Build the validation set" in form and 'name="size"' in form
    assert f'<option value="{judge.id}" selected>judge-llm</option>' in form  # the deployment's judge, offered

    built = admin_client.post(
        changelist, {**action, "step": "build", "name": "acme-admin", "size": "5", "judge": judge.id}
    ).content.decode()
    prompt_set = PromptSet.objects.get(name="acme-admin")
    assert prompt_set.prompts.count() == 5
    assert "7 logged calls read" in built and "5 prompts chosen over" in built
    estimate = validation_set_estimate(prompt_set=prompt_set)
    assert f"{estimate.calls:,} calls (an answer and a verdict of judge-llm per prompt and LLM)" in built
    assert f"estimated {estimate.total_usd:.4f} USD" in built and "Start profiling" in built

    started = admin_client.post(
        changelist, {**action, "step": "start", "prompt_set": prompt_set.id, "max_cost_usd": "0.5", "activate": "on"}
    )
    job = Job.objects.get(kind=Job.Kind.PROFILE_VALIDATION_SET)
    assert started.status_code == 302 and started["Location"] == f"/admin/routing/job/{job.id}/change/"
    assert job.arguments == {"prompt_set_id": prompt_set.id, "max_cost_usd": 0.5, "activate": True}

    quiet = tenant_create(name="quiet-co", budget_usd="10")
    refused = admin_client.post(
        changelist,
        {**action, "_selected_action": [quiet.id], "step": "build", "name": "q", "size": "5", "judge": judge.id},
    ).content.decode()
    assert "tenant &#x27;quiet-co&#x27; does not log gateway text" in refused
    assert not PromptSet.objects.filter(name="q").exists()
