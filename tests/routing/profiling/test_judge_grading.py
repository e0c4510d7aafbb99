"""The judge on a registered LLM (fake upstreams): verdicts cached in the database, profiling graded by the
judge with its cost in the job's cost, and the cost cap stopping a job with what was graded kept."""

import re

import pytest

from registry.models import Outcome, Prompt
from registry.services import llm_register
from routerhub.demo_upstream import FakeUpstream
from routing import tasks
from routing.models import Job, JudgeVerdict
from routing.profiling.client import ProviderConfigurationError
from routing.services import jobs
from routing.services.judging import judge_for_llm
from routing.services.profiling import ProfilingOptions, llm_profile_run
from tests.fakes.fake_openai import GARBAGE, FakeOpenAI
from tests.fixtures.subjects import GOOD_CATEGORY, VOCABULARY

FAST = {"backoff_seconds": 0.0, "concurrency": 1}
_SECTION = re.compile(r"<(reference|answer)>\n(.*?)\n</\1>", re.DOTALL)


def reference_judge(text: str) -> str:
    """A judge that compares the answer's letter with the reference, and refuses to grade nonsense."""
    sections = dict(_SECTION.findall(text))
    if GARBAGE in sections.get("answer", ""):
        return "I'm sorry, I can't grade this answer."
    letter = re.search(r"answer is \((\w)\)", sections.get("answer", ""))
    return "Verdict: CORRECT" if letter and letter.group(1) == sections.get("reference") else "Verdict: INCORRECT"


@pytest.fixture
def judged_set(routing_data):
    routing_data.prompt_set.metadata = {"grader": "judge", "judge_llm": "judge-llm"}
    routing_data.prompt_set.save()
    return routing_data


def register(server, name, **prices):
    return llm_register(name=name, api_base=server.url, api_model=f"{name}-1", **prices)


def test_a_second_identical_question_is_answered_from_the_cache_at_no_cost_and_without_a_call(db):
    with FakeOpenAI(policy=lambda text: "Looks right.\nVerdict: CORRECT") as server:
        judge_llm = register(server, "judge-llm", usd_per_query=0.003)
        first = judge_for_llm(judge_llm).reference(prompt="6 × 7?", answer="It is 42.", reference="42")
        again = judge_for_llm(judge_llm).reference(prompt="6 × 7?", answer="It is 42.", reference="42")
        assert len(server.requests) == 1
        other = judge_for_llm(judge_llm).reference(prompt="6 × 7?", answer="It is 41.", reference="42")
        assert len(server.requests) == 2
    assert (first.label, first.score, first.cost_usd, first.cached) == ("correct", 1.0, 0.003, False)
    assert (again.label, again.score, again.cost_usd, again.cached) == ("correct", 1.0, 0.0, True)
    assert not other.cached
    rows = list(JudgeVerdict.objects.order_by("id").values_list("judge__name", "mode", "label", "score", "cost_usd"))
    assert rows == [("judge-llm", "reference", "correct", 1.0, 0.003)] * 2
    assert JudgeVerdict.objects.first().prompt_excerpt == "6 × 7?"


def test_no_verdict_is_cached_as_no_verdict_and_pairwise_reuses_each_order(db):
    with FakeOpenAI(policy=lambda text: "Verdict: A" if "<answer_a>" in text else "The answer is fine.") as server:
        judge = judge_for_llm(register(server, "judge-llm", usd_per_query=0.001))
        garbled = judge.reference(prompt="?", answer="x", reference="y")
        assert judge.reference(prompt="?", answer="x", reference="y").label == "unparseable"
        tie = judge.pairwise(prompt="?", answer="mine", comparison="theirs")
        # The same pair the other way round is the same two questions: answered from the cache.
        swapped = judge.pairwise(prompt="?", answer="theirs", comparison="mine")
    assert len(server.requests) == 3
    assert (garbled.label, garbled.score) == ("unparseable", None)
    assert (tie.label, tie.score, tie.cost_usd) == ("tie", 0.5, 0.002)
    assert (swapped.label, swapped.score, swapped.cost_usd, swapped.cached) == ("tie", 0.5, 0.0, True)
    assert JudgeVerdict.objects.get(mode="reference").score is None


def test_profiling_with_the_judge_grader_stores_judged_outcomes_and_counts_the_judges_cost(judged_set):
    validation = list(judged_set.validation_prompts())
    with FakeOpenAI(policy=reference_judge) as judge_server, FakeOpenAI(policy=judged_set.expert_policy()) as llms:
        register(judge_server, "judge-llm", usd_per_query=0.002)
        llm = register(llms, "fake-math", usd_per_query=0.001)
        # Four answers, then four judge calls, in flight at a time.
        profile, report = llm_profile_run(llm=llm, options=ProfilingOptions(**{**FAST, "concurrency": 4}))
        garbage = {r["text"] for r in llms.requests if judged_set.expert_policy()(r["text"]) == GARBAGE}
        # The LLM is asked again only what got no verdict; the judge is not asked again at all.
        judge_calls = len(judge_server.requests)
        _, again = llm_profile_run(llm=llm, options=ProfilingOptions(**FAST))
        assert len(judge_server.requests) == judge_calls

    outcomes = {o.prompt_id: o for o in Outcome.objects.filter(llm=llm)}
    assert garbage and len(outcomes) == len(validation) - len(garbage)
    for prompt in validation:
        if prompt.text in garbage:
            assert prompt.id not in outcomes  # the judge refused: no outcome, never a guessed score
        else:
            assert outcomes[prompt.id].score == float(prompt.category == GOOD_CATEGORY), outcomes[
                prompt.id
            ].response_text
    assert (report.judged, report.no_verdict, report.judge_cached) == (len(validation), len(garbage), 0)
    assert report.judge_cost_usd == pytest.approx(0.002 * len(validation))
    assert report.cost_usd == pytest.approx(0.003 * len(validation))
    assert all("refused" in line for line in report.no_verdicts)
    verdicts = JudgeVerdict.objects.filter(graded_llm=llm)
    assert verdicts.count() == len(validation) and verdicts.filter(label="refused").count() == len(garbage)
    assert profile.n_validation_outcomes == len(outcomes)
    assert (again.asked, again.judge_cached, again.judge_cost_usd) == (len(garbage), len(garbage), 0.0)


def test_prompts_without_references_are_graded_on_the_rubric_without_a_system_message(judged_set):
    Prompt.objects.filter(prompt_set=judged_set.prompt_set).update(answer="")
    judged = []

    def rubric_judge(text):
        judged.append(text)
        return "Score: 10" if "The answer is" in text.split("<answer>")[1] else "Score: CANNOT JUDGE"

    answering = FakeUpstream(answer=lambda model, text: "The answer is (A).")
    with FakeOpenAI(policy=rubric_judge) as judge_server, answering as llms:
        register(judge_server, "judge-llm")
        llm = register(llms, "fake-a")
        _, report = llm_profile_run(llm=llm, options=ProfilingOptions(**{**FAST, "concurrency": 4}))
    n = len(judged_set.state.validation_prompt_ids)
    # Asked as in traffic: the prompt alone, no answer-format instruction.
    assert len(llms.calls) == n and all([m["role"] for m in c.body["messages"]] == ["user"] for c in llms.calls)
    assert report.judged == len(judged) == n and all("<reference>" not in t and "Score: N" in t for t in judged)
    assert list(Outcome.objects.filter(llm=llm).values_list("score", flat=True).distinct()) == [1.0]
    assert JudgeVerdict.objects.filter(mode="rubric", label="scored").count() == n


def test_the_judge_llm_comes_from_the_prompt_set_else_the_setting_and_a_missing_one_is_named(routing_data, settings):
    from routing.services.judging import judge_llm_of

    routing_data.prompt_set.metadata = {"grader": "judge"}
    routing_data.prompt_set.save()
    settings.ROUTERHUB_JUDGE_LLM = ""
    with FakeOpenAI(policy=routing_data.expert_policy()) as llms:
        llm = register(llms, "fake-math")
        with pytest.raises(ValueError, match="neither its metadata judge_llm nor ROUTERHUB_JUDGE_LLM"):
            llm_profile_run(llm=llm, options=ProfilingOptions(**FAST))
        default, named = register(llms, "default-judge"), llm_register(name="no-api-judge")
        settings.ROUTERHUB_JUDGE_LLM = "default-judge"
        assert judge_llm_of(routing_data.prompt_set) == default == judge_llm_of(None)
        routing_data.prompt_set.metadata["judge_llm"] = named.name
        routing_data.prompt_set.save()
        assert judge_llm_of(routing_data.prompt_set) == named
        with pytest.raises(ProviderConfigurationError, match="no-api-judge has no api_base"):
            llm_profile_run(llm=llm, options=ProfilingOptions(**FAST))
        routing_data.prompt_set.metadata["judge_llm"] = "nobody"
        routing_data.prompt_set.save()
        with pytest.raises(ValueError, match="metadata judge_llm names unknown LLM 'nobody'"):
            llm_profile_run(llm=llm, options=ProfilingOptions(**FAST))
        assert llms.requests == []


@pytest.fixture
def sent(monkeypatch):
    calls = []
    for task in tasks.TASK_OF_KIND.values():
        monkeypatch.setattr(task, "apply_async", lambda *args, _task=task, **kwargs: calls.append((_task.name, kwargs)))
    return calls


def test_the_cost_cap_counts_judge_calls_and_stops_the_job_with_what_was_graded_kept(judged_set, sent):
    right = judged_set.expert_policy(good=tuple(VOCABULARY))
    with FakeOpenAI(policy=reference_judge) as judge_server, FakeOpenAI(policy=right) as llms:
        register(judge_server, "judge-llm", usd_per_query=0.01)
        llm = register(llms, "fake-free")  # unpriced answers: only the judge's calls count
        job, _ = jobs.job_enqueue(kind=Job.Kind.PROFILE_LLM, llm=llm, arguments={**FAST, "max_cost_usd": 0.05})
        tasks.profile_llm.apply(kwargs={"llm_id": llm.id, "job_id": job.id})
        job.refresh_from_db()
        assert len(judge_server.requests) == 5 and len(llms.requests) == 5
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["stopped_by_cost_cap"] and job.result["judged"] == job.result["answered"] == 5
    assert job.result["judge_cost_usd"] == pytest.approx(0.05) and job.result["cost_usd"] == pytest.approx(0.05)
    assert list(Outcome.objects.filter(llm=llm).values_list("score", flat=True)) == [1.0] * 5
    assert job.state.profiles.get(llm=llm).n_validation_outcomes == 5


def test_the_admin_lists_verdicts_read_only_with_judge_mode_label_score_and_cost(db, admin_client):
    with FakeOpenAI(policy=lambda text: "Verdict: CORRECT" if "42" in text else "no idea") as server:
        judge = judge_for_llm(register(server, "judge-llm", usd_per_query=0.0025))
        judge.reference(prompt="6 × 7?", answer="42", reference="42")
        judge.reference(prompt="What is love?", answer="baby don't hurt me", reference="a feeling")
    page = admin_client.get("/admin/routing/judgeverdict/").content.decode()
    rows = re.findall(r"<tr>.*?</tr>", page, re.DOTALL)
    texts = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip().lower() for row in rows[1:]]
    assert len(texts) == 2
    assert "judge-llm reference unparseable no verdict 0.002500" in texts[0] and "what is love?" in texts[0]
    assert "judge-llm reference correct 1.00 0.002500" in texts[1] and "6 × 7?" in texts[1]
    assert admin_client.get("/admin/routing/judgeverdict/add/").status_code == 403
    verdict = JudgeVerdict.objects.get(label="correct")
    detail = admin_client.get(f"/admin/routing/judgeverdict/{verdict.id}/change/").content.decode()
    assert "Verdict: CORRECT" in detail and 'name="label"' not in detail
