"""The profiling client against the fake OpenAI-compatible server (no database)."""

import json

import pytest

from routing.profiling.client import (
    ChatClient,
    PromptRejected,
    ProviderConfigurationError,
    TransientProviderError,
    complete_all,
)
from tests.fakes.fake_openai import FakeOpenAI, RawReply


def client_for(server, **options):
    return ChatClient(api_base=server.url, model="fake", backoff_seconds=0.0, **options)


def test_answer_carries_text_usage_and_latency():
    with FakeOpenAI(policy=lambda text: "The answer is (B).") as server:
        completion = client_for(server).complete("What is it?\nA. x\nB. y")
    assert completion.text == "The answer is (B)."
    assert completion.input_tokens > 0 and completion.output_tokens == 4
    assert completion.latency_ms >= 0
    assert server.requests[0]["model"] == "fake"


@pytest.mark.parametrize("status", [500, 429, 503])
def test_transient_failures_are_retried_with_backoff(status):
    sleeps = []
    with FakeOpenAI(policy=lambda text: "ok", fail_first=2, fail_status=status) as server:
        completion = client_for(server, sleep=sleeps.append).complete("q")
    assert completion.text == "ok"
    assert [r["status"] for r in server.requests] == [status, status, 200]
    assert len(sleeps) == 2


def test_transient_failures_beyond_the_attempts_raise_transient():
    with FakeOpenAI(policy=lambda text: "ok", fail_first=10) as server:
        with pytest.raises(TransientProviderError):
            client_for(server, max_attempts=3, sleep=lambda s: None).complete("q")
        assert len(server.requests) == 3


def test_unreachable_server_is_transient():
    client = ChatClient(api_base="http://127.0.0.1:9/v1", model="x", max_attempts=1, timeout_seconds=1)
    with pytest.raises(TransientProviderError):
        client.complete("q")


def test_wrong_key_or_model_is_a_configuration_error_and_not_retried():
    with FakeOpenAI(policy=lambda text: RawReply(401, '{"error": "bad key"}')) as server:
        with pytest.raises(ProviderConfigurationError):
            client_for(server).complete("q")
        assert len(server.requests) == 1


def test_a_rejected_prompt_is_reported_not_retried():
    with FakeOpenAI(policy=lambda text: RawReply(400, '{"error": "context too long"}')) as server:
        with pytest.raises(PromptRejected):
            client_for(server).complete("q")
        assert len(server.requests) == 1


def test_a_body_that_is_not_json_becomes_the_answer_text():
    with FakeOpenAI(policy=lambda text: RawReply(200, "<html>oops</html>")) as server:
        completion = client_for(server).complete("q")
    assert completion.text == "<html>oops</html>" and completion.input_tokens is None


def test_an_answer_of_tool_calls_is_read_as_the_gateway_reads_one():
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"term": "x"}'}}],
    }
    body = json.dumps({"choices": [{"message": message}], "usage": {"prompt_tokens": 9, "completion_tokens": 7}})
    with FakeOpenAI(policy=lambda text: RawReply(200, body)) as server:
        completion = client_for(server).complete("q")
    assert (completion.text, completion.output_tokens) == ('lookup{"term": "x"}', 7)


def test_complete_all_bounds_calls_in_flight_and_yields_every_prompt():
    import threading

    in_flight, peak, lock = [0], [0], threading.Lock()

    def policy(text):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        import time

        time.sleep(0.02)
        with lock:
            in_flight[0] -= 1
        return f"echo {text}"

    with FakeOpenAI(policy=policy) as server:
        results = dict(complete_all(client_for(server), ((i, f"q{i}") for i in range(30)), concurrency=4))
    assert sorted(results) == list(range(30))
    assert results[7].text == "echo q7"
    assert 1 < peak[0] <= 4


def test_complete_all_stops_starting_calls_when_told():
    started = []
    with FakeOpenAI(policy=lambda text: "x") as server:
        may_start = lambda: len(started) < 5  # noqa: E731
        results = []
        for prompt_id, _answer in complete_all(
            client_for(server), ((i, f"q{i}") for i in range(20)), concurrency=1, may_start=may_start
        ):
            started.append(prompt_id)
            results.append(prompt_id)
    assert len(results) == 5


def test_complete_all_yields_finished_answers_before_raising_a_lasting_failure():
    def policy(text):
        return RawReply(503, "down") if text == "q3" else "fine"

    with FakeOpenAI(policy=policy) as server:
        got = []
        with pytest.raises(TransientProviderError):
            for prompt_id, _answer in complete_all(
                client_for(server, max_attempts=2), ((i, f"q{i}") for i in range(6)), concurrency=1
            ):
                got.append(prompt_id)
    assert got == [0, 1, 2]


def test_complete_all_reports_idle_periods_while_calls_are_slow():
    idle = []
    with FakeOpenAI(policy=lambda text: "late", latency_seconds=0.35) as server:
        results = list(
            complete_all(
                client_for(server), [(1, "q")], concurrency=1, idle_seconds=0.1, on_idle=lambda: idle.append(1)
            )
        )
    assert [pid for pid, _ in results] == [1] and len(idle) >= 2


def test_an_answer_larger_than_the_cap_stops_the_job_as_a_configuration_error(monkeypatch):
    from routing.profiling import client

    monkeypatch.setattr(client, "MAX_ANSWER_BYTES", 2**20)
    with FakeOpenAI(policy=lambda text: RawReply(200, "x" * (5 * 2**20))) as server:
        with pytest.raises(ProviderConfigurationError, match="an answer larger than 1 MiB"):
            client_for(server).complete("q")
        assert len(server.requests) == 1  # not retried: every answer would be the same


def test_an_answer_that_never_ends_is_a_timeout_at_the_deadline(settings):
    import time

    from tests.fakes.hostile_upstream import HostileUpstream

    settings.ROUTERHUB_UPSTREAM_DEADLINE_SECONDS = 1

    async def dribble(body, reply):
        await reply.start(200, "application/json")
        for _ in range(100):  # 10 s, then it ends (a client without a deadline waits that long)
            if not await reply.write(b" ") or not await reply.wait(0.1):
                return
        await reply.write(b'{"choices": [{"message": {"content": "late"}}]}')

    with HostileUpstream({"fake": dribble}) as server:
        started = time.monotonic()
        with pytest.raises(TransientProviderError, match="timed out"):
            client_for(server, max_attempts=1, timeout_seconds=5).complete("q")
        assert time.monotonic() - started < 3
