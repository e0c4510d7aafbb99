"""The SSE relay: events rewritten one by one, usage kept for metering, nothing held back."""

import json
import random

import pytest

from routing.upstream import streams
from routing.upstream.http import AnswerTooLarge
from routing.upstream.streams import DONE, EventRelay, Scrubber, answer_text

SECRET = "sk-live-0123456789abcdef"


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


def test_an_upstream_error_event_is_passed_on_in_openai_shape_naming_the_llm_without_addresses():
    relay = EventRelay(model="m", client_wants_usage=False, secret="sk-abc", hosts=("llm.internal.example",))
    said = "overloaded at 10.2.3.4:8080 (llm.internal.example, [fd00::12]:443), key sk-abc"
    out = relay.feed(b'data: {"error": {"message": "' + said.encode() + b'"}}\n\n')
    error = events(out)[0]["error"]
    assert relay.upstream_error == {"message": said}
    assert error["message"].startswith("The LLM m reported an error mid-stream: overloaded at")
    assert error["type"] == "upstream_error" and error["code"] == "upstream_error"
    for hidden in ("10.2.3.4", "8080", "llm.internal", "fd00", "sk-abc"):
        assert hidden not in out.decode()


def test_answer_text_counts_content_refusals_reasoning_and_tool_arguments():
    message = {
        "content": "a",
        "refusal": "b",
        "reasoning_content": "c",
        "tool_calls": [{"function": {"name": "f", "arguments": '{"x": 1}'}}],
    }
    assert answer_text(message) == 'abcf{"x": 1}'


# --- events cut anywhere, and the key cut in two -----------------------------------------------------


def delta_chunk(index=0, finish=None, **delta):
    payload = {"id": "c1", "object": "chat.completion.chunk", "model": "upstream-id"}
    payload["choices"] = [{"index": index, "delta": delta, "finish_reason": finish}]
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


# An answer that holds the key whole, cut across two events, and in a tool call's arguments, and whose
# last piece ends with what could be the key's start ("s").
STREAM = (
    delta_chunk(role="assistant", content="")
    + delta_chunk(content="Your key: sk-live-01")
    + b": keep-alive\n\n"
    + delta_chunk(content="23456789ab")
    + delta_chunk(content="cdef and again " + SECRET + ".")
    + delta_chunk(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": '{"k": "sk-live-0123'}}])
    + delta_chunk(tool_calls=[{"index": 0, "function": {"arguments": '456789abcdef"}'}}])
    + delta_chunk(content=" Done s")
    + delta_chunk(finish="stop")
    + b'data: {"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 9}}\n\n'
    + DONE
)
CONTENT = "Your key: [redacted] and again [redacted]. Done s"
ARGUMENTS = '{"k": "[redacted]"}'


def received(pieces) -> tuple[bytes, str, str]:
    """(the bytes the client gets, its content, its tool call's arguments) for the upstream's bytes cut
    into ``pieces``."""
    relay = EventRelay(model="routed", client_wants_usage=False, secret=SECRET)
    out = b"".join(relay.feed(piece) for piece in pieces) + relay.flush()
    content = arguments = ""
    for event in events(out):
        if isinstance(event, dict):
            delta = event["choices"][0]["delta"]
            content += delta.get("content") or ""
            arguments += "".join(call["function"].get("arguments", "") for call in delta.get("tool_calls") or [])
    assert relay.text.count(SECRET) == 3 and relay.usage["completion_tokens"] == 9  # metered as sent
    return out, content, arguments


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_a_stream_cut_into_two_chunks_anywhere_relays_the_same_events_without_the_key(newline):
    stream = STREAM.replace(b"\n", newline)
    whole, content, arguments = received([stream])
    assert (content, arguments) == (CONTENT, ARGUMENTS) and whole.endswith(DONE)
    for cut in range(1, len(stream)):
        out, content, arguments = received([stream[:cut], stream[cut:]])
        assert SECRET.encode() not in out and b"sk-live-0123456789" not in out
        assert (content, arguments) == (CONTENT, ARGUMENTS), cut
        assert out == whole, cut


def test_a_stream_sent_a_byte_at_a_time_loses_nothing_and_leaks_no_key():
    out, content, arguments = received([STREAM[i : i + 1] for i in range(len(STREAM))])
    assert (content, arguments) == (CONTENT, ARGUMENTS) and SECRET.encode() not in out


def test_text_held_back_as_a_possible_key_is_sent_when_the_stream_ends_without_finishing():
    relay = EventRelay(model="m", client_wants_usage=False, secret=SECRET)
    out = relay.feed(delta_chunk(content="hello sk-li"))
    assert events(out)[0]["choices"][0]["delta"]["content"] == "hello "
    held = events(relay.flush())
    assert held[0]["choices"][0]["delta"]["content"] == "sk-li" and held[0]["model"] == "m"


def test_the_scrubber_finds_the_key_however_a_text_is_cut():
    generator = random.Random(7)
    text = "".join(generator.choice(["a", "s", "sk-", " ", SECRET, SECRET[:9], "\n"]) for _ in range(400))
    for _ in range(200):
        cuts = sorted(generator.sample(range(1, len(text)), generator.randint(1, 60)))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        scrubber = Scrubber(SECRET)
        out = [scrubber.feed(piece) for piece in pieces] + [scrubber.flush()]
        assert "".join(out) == text.replace(SECRET, "[redacted]")
        assert all(SECRET not in piece for piece in out)


# --- an upstream that sends too much -----------------------------------------------------------------


def test_a_50_mb_event_is_cut_off_once_it_passes_the_event_cap():
    relay = EventRelay(model="m", client_wants_usage=False)
    relay.feed(delta_chunk(content="fine"))
    head = b'data: {"choices": [{"index": 0, "delta": {"content": "'
    megabyte = b"x" * 2**20
    fed = 0
    with pytest.raises(AnswerTooLarge, match="an event larger than 4 MiB"):
        for piece in [head, *[megabyte] * 50]:
            relay.feed(piece)
            fed += 1
    assert fed <= 1 + streams.MAX_EVENT_BYTES // 2**20  # nothing was read past the cap
    assert relay.text == "fine"


def test_a_stream_of_small_events_is_cut_off_at_the_stream_cap(monkeypatch):
    monkeypatch.setattr(streams, "MAX_ANSWER_BYTES", 100_000)
    relay = EventRelay(model="m", client_wants_usage=False)
    event = delta_chunk(content="word ")
    with pytest.raises(AnswerTooLarge, match="a stream larger than"):
        for _ in range(100_000 // len(event) + 2):
            relay.feed(event)
    assert relay.received <= 100_000 + len(event)


def test_the_relay_examines_each_byte_once_however_small_the_chunks():
    """Work linear in the stream: a 3 MiB event fed 64 bytes at a time is examined once, not again
    from its start on every chunk (quadratic in the number of chunks)."""
    relay = EventRelay(model="m", client_wants_usage=False)
    content = "y" * (3 * 2**20)
    stream = delta_chunk(content=content) + delta_chunk(content="!") + DONE
    out = b"".join(relay.feed(stream[i : i + 64]) for i in range(0, len(stream), 64))
    assert relay.scanned == len(stream) and relay.done
    assert [e["choices"][0]["delta"]["content"] for e in events(out) if isinstance(e, dict)] == [content, "!"]
