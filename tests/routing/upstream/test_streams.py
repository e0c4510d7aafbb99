"""The SSE relay: events rewritten one by one, usage kept for metering, nothing held back."""

import json

from routing.upstream.streams import DONE, EventRelay, answer_text


def chunk(content=None, usage=None, choices=True, model="upstream-id"):
    payload = {"id": "c1", "object": "chat.completion.chunk", "model": model}
    payload["choices"] = [{"index": 0, "delta": {"content": content}}] if choices else []
    if usage is not None:
        payload["usage"] = usage
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def events(data: bytes) -> list:
    return [json.loads(e[6:]) if e.startswith(b"data: {") else e for e in data.split(b"\n\n") if e]


def test_each_complete_event_is_rewritten_at_once_and_a_partial_one_waits():
    relay = EventRelay(model="routed-name", client_wants_usage=False)
    first = chunk("Hel") + chunk("lo")[:10]
    out = relay.feed(first)
    assert [e["model"] for e in events(out)] == ["routed-name"]
    out = relay.feed(chunk("lo")[10:] + b": keep-alive\n\n")
    parsed = events(out)
    assert parsed[0]["choices"][0]["delta"]["content"] == "lo" and parsed[1] == b": keep-alive"
    assert relay.text == "Hello" and relay.chunks == 2


def test_crlf_and_a_missing_final_blank_line_are_handled():
    relay = EventRelay(model="m", client_wants_usage=True)
    out = relay.feed(chunk("a").replace(b"\n", b"\r\n") + b"data: [DONE]")
    assert events(out)[0]["choices"][0]["delta"]["content"] == "a"
    assert relay.flush() == DONE and relay.done


def test_usage_asked_for_metering_only_is_kept_but_not_sent():
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    hidden = EventRelay(model="m", client_wants_usage=False)
    out = hidden.feed(chunk("x", usage=None) + chunk(choices=False, usage=usage) + DONE)
    assert hidden.usage == usage and hidden.done
    assert [e for e in events(out) if isinstance(e, dict) and "usage" in e] == [] and out.endswith(DONE)
    shown = EventRelay(model="m", client_wants_usage=True)
    out = shown.feed(chunk(choices=False, usage=usage))
    assert events(out)[0]["usage"] == usage and events(out)[0]["model"] == "m"


def test_an_upstream_error_event_is_passed_on_and_noted():
    relay = EventRelay(model="m", client_wants_usage=False)
    out = relay.feed(b'data: {"error": {"message": "overloaded"}}\n\n')
    assert events(out)[0] == {"error": {"message": "overloaded"}} and relay.upstream_error == {"message": "overloaded"}


def test_answer_text_counts_content_refusals_reasoning_and_tool_arguments():
    message = {
        "content": "a",
        "refusal": "b",
        "reasoning_content": "c",
        "tool_calls": [{"function": {"name": "f", "arguments": '{"x": 1}'}}],
    }
    assert answer_text(message) == 'abcf{"x": 1}'
