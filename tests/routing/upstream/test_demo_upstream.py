"""The demo's fake upstream answers each MMLU-Pro question right or wrong as the demo outcomes say."""

import csv
import gzip
import json

import httpx

from registry.data_format import prompt_text
from routerhub.demo_upstream import FakeUpstream, demo_answers, openai_prompt_tokens
from routing.profiling.graders import MultipleChoiceGrader


def test_answers_follow_the_outcomes_of_each_model(api_slice):
    with gzip.open(api_slice / "prompts.jsonl.gz", "rt") as handle:
        prompts = {str(p["id"]): p for p in map(json.loads, handle)}
    with gzip.open(api_slice / "outcomes.csv.gz", "rt") as handle:
        outcomes = [row for row, _ in zip(csv.DictReader(handle), range(300))]
    answer = demo_answers(api_slice)
    grader = MultipleChoiceGrader()
    for row in outcomes:
        prompt = prompts[row["prompt_id"]]
        text = answer(row["model"], prompt_text(prompt["question"], prompt["options"]))
        assert grader.grade(text, prompt["answer"]) == float(row["correct"]), (row, text)
    assert "demo upstream" in answer("gemini-1.5-pro-002", "What is the capital of France?")


def test_it_serves_openai_shaped_answers_with_usage_as_openai_bills_it():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    with FakeUpstream(models=["m"]) as upstream:
        body = httpx.post(upstream.url + "/chat/completions", json={"model": "m", "messages": messages}).json()
        listed = httpx.get(upstream.url + "/models").json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "m heard: Hello there"
    assert body["usage"]["prompt_tokens"] == openai_prompt_tokens(messages) == 3 + (3 + 3) + (3 + 2)
    assert [m["id"] for m in listed["data"]] == ["m"]
