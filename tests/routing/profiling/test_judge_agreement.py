"""``manage.py judge_agreement``: the reference-guided judge against the rule grader, on the demo upstream."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from registry.models import LLM, PromptSet
from registry.services import llm_register
from routerhub.demo_upstream import FakeUpstream, demo_answers
from routing.models import JudgeVerdict
from routing.services.gateway import demo_llms_at


@pytest.fixture
def demo(api_slice, prompt_set):
    with FakeUpstream(answer=demo_answers(api_slice)) as upstream:
        demo_llms_at(dataset=prompt_set.name, api_base=upstream.url)
        yield upstream


def run(*args):
    out = StringIO()
    call_command("judge_agreement", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_the_demo_judge_agrees_with_the_multiple_choice_grader_and_a_second_run_is_read_from_the_cache(demo):
    answerers = "gemini-1.5-pro-002,Meta-Llama-3_1-70B"
    judge = LLM.objects.get(name="gemini-1.5-flash-002")
    args = ["--prompt-set", "mmlu-slice", "--judge", judge.name, "--answerers", answerers, "--split", "all"]
    report = json.loads(run(*args, "--limit", "15", "--json"))
    calls = len(demo.calls)
    assert report["pairs"] == report["answers_asked"] == 30
    # The slice has no outcome of one of these LLMs on one question: its answer is the demo's note, which
    # the demo judge cannot judge — recorded as a refusal, not counted either way.
    assert report["no_verdict"] == {"refused": 1} and report["with_verdict"] == 29
    assert report["agreement"] == 1.0 and report["kappa"] == 1.0, report["disagreements"]
    assert report["confusion"]["correct→correct"] > 0 and report["confusion"]["incorrect→incorrect"] > 0
    # Two LLMs giving the very same answer to a question are judged once.
    assert report["judge_calls"] + report["judge_cached"] == 30 and report["judge_calls"] >= 25
    assert JudgeVerdict.objects.filter(judge=judge).count() == report["judge_calls"]
    assert report["judge_cost_usd"] > 0 and report["answer_cost_usd"] > 0

    text = run(*args, "--limit", "15")
    assert len(demo.calls) == calls + 30  # the answers asked again, the judge not at all
    assert "agreement 1.000 (29/29), Cohen's kappa 1.000" in text and "no verdict: 1 refused" in text
    assert "judge calls 0 (cached 30), judge cost $0.0000" in text


def test_bad_arguments_are_refused_naming_what_is_wrong(db):
    PromptSet.objects.create(name="tiny")
    with pytest.raises(CommandError, match="--judge: no LLM named 'nobody'"):
        run("--prompt-set", "tiny", "--judge", "nobody")
    with pytest.raises(CommandError, match="no prompt set"):
        run("--prompt-set", "nope", "--judge", "gemini-1.5-flash-002")
    llm_register(name="judge-llm")
    with pytest.raises(CommandError, match="--answerers: no LLM named 'ghost'"):
        run("--prompt-set", "tiny", "--judge", "judge-llm", "--answerers", "ghost")
    with pytest.raises(CommandError, match="tiny has no prompts with a reference answer"):
        run("--prompt-set", "tiny", "--judge", "judge-llm", "--answerers", "judge-llm")
