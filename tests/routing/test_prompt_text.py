"""What a chat is routed on (the user's request, with system prompts and earlier turns as a bounded
nudge), and how many tokens it is sent: counted exactly, however long."""

import random

import numpy as np
import pytest

from registry.tokens import PIECE_CHARS, _tokenizer, count_tokens, text_pieces, text_tokens
from routing import prompt_text
from routing.prompt_text import (
    TOKENS_PER_MESSAGE,
    TOKENS_PER_REPLY,
    chat_input_tokens,
    request_and_context,
    route_input,
    routed_embedding,
)

# System prompts people really send, from a bare one-liner to a paragraph that dwarfs a short question.
COMMON_SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are ChatGPT, a large language model trained by OpenAI. Answer as concisely as possible.",
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature. If a question does not make any "
    "sense, or is not factually coherent, explain why instead of answering something not correct. If you don't know "
    "the answer to a question, please don't share false information.",
    "You are Claude, an AI assistant made by Anthropic. Be helpful, harmless and honest.",
    "Always answer in English. Think step by step before answering.",
]
QUESTIONS = [
    "Compute the integral of x^2 e^x from 0 to 1.",
    "Let f(x) = x^3 - 6x^2 + 11x - 6. Find all real roots of f and the sum of their squares.",
    "Write a Python function that returns the longest palindromic substring of a string.",
    "Which enzyme unwinds the DNA double helix during replication?",
]


def test_the_request_is_the_last_user_turn_and_the_context_the_turns_before_newest_first():
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Tell me about tides."},
        {"role": "assistant", "content": "Tides follow the moon."},
        {"role": "user", "content": [{"type": "text", "text": "And in lakes?"}]},
    ]
    assert request_and_context(messages) == (
        "And in lakes?",
        "Tides follow the moon.\n\nTell me about tides.\n\nYou are terse.",
    )


def test_the_context_is_bounded_and_keeps_the_end_of_a_long_turn(monkeypatch):
    monkeypatch.setattr(prompt_text, "CONTEXT_CHARS", 100)
    messages = [
        {"role": "user", "content": "old " * 500},
        {"role": "assistant", "content": "a " * 499 + "END"},
        {"role": "user", "content": "new?"},
    ]
    request, context = request_and_context(messages)
    assert request == "new?" and len(context) == 100 and context.endswith("END")


def test_a_plain_prompt_has_no_context():
    routed = route_input(prompt="What is 2 + 2?")
    assert (routed.request, routed.context) == ("What is 2 + 2?", "")
    assert routed.input_tokens > 0


def test_no_context_however_long_turns_the_routed_vector_more_than_the_weight_allows():
    rng = np.random.default_rng(0)
    request = rng.normal(size=384)
    request /= np.linalg.norm(request)
    side = rng.normal(size=384)
    side -= (side @ request) * request
    side /= np.linalg.norm(side)
    adversarial = -0.25 * request + np.sqrt(1 - 0.25**2) * side  # the context turning the vector the most
    contexts = [*(c / np.linalg.norm(c) for c in rng.normal(size=(200, 384))), -request, adversarial]
    cosines = [float(routed_embedding(request, context) @ request) for context in contexts]
    assert min(cosines) == pytest.approx(np.sqrt(1 - 0.25**2), abs=1e-5)  # the bound of routing/prompt_text.py, reached
    assert max(cosines) == pytest.approx(1.0, abs=1e-5) and np.median(cosines) < 0.99  # contexts do move it
    np.testing.assert_array_equal(routed_embedding(request, None), request)
    assert np.linalg.norm(routed_embedding(request, rng.normal(size=384))) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.slow
def test_with_minilm_a_system_prompt_leaves_a_question_nearest_itself_not_a_greeting():
    from registry.embedders import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    greeting = embedder.embed_one("hi")
    for question in QUESTIONS:
        alone = embedder.embed_one(question)
        for system in COMMON_SYSTEM_PROMPTS:
            routed = route_input(
                messages=[{"role": "system", "content": system}, {"role": "user", "content": question}]
            )
            vector = routed_embedding(embedder.embed_one(routed.request), embedder.embed_one(routed.context))
            assert vector @ alone > 0.96, (question, system)
            assert vector @ alone > vector @ greeting + 0.3, (question, system)


# --- token counts ---------------------------------------------------------------------------------------


def whole_count(text: str) -> int:
    """The tokenizer's count of ``text`` in one piece."""
    return len(_tokenizer().encode(text, add_special_tokens=False).ids)


# 191,847 characters whose tokens are all in their last 2 %: 47 words too long for WordPiece (one token
# each), then 1,900 one-token words.
SPARSE_THEN_DENSE = ("x" * 4000 + " ") * 47 + " a" * 1900


def test_a_long_prompt_is_counted_exactly_wherever_its_dense_stretch_is():
    assert text_tokens(SPARSE_THEN_DENSE) == whole_count(SPARSE_THEN_DENSE) == 1947
    sparse, dense = ("x" * 4000 + " ") * 47, " a" * 1900
    half = len(sparse) // 2 - 2000
    for text in (dense + " " + sparse, sparse[:half] + dense + " " + sparse[half:], sparse + dense):
        assert text_tokens(text) == whole_count(text) == 1947
    messages = [{"role": "user", "content": SPARSE_THEN_DENSE}]
    framing = TOKENS_PER_MESSAGE + TOKENS_PER_REPLY
    assert chat_input_tokens(messages, {}).text == 1947 + framing
    assert route_input(messages=messages).input_tokens == 1947 + framing


def test_counted_in_pieces_a_long_text_counts_what_it_counts_whole():
    """Cut at spaces and line breaks only: text Python calls whitespace that the tokenizer drops as a
    control character (\\x1c, \\x85) or joins to a word would be counted differently cut there."""
    rng = random.Random(11)
    alphabet = list("abcdefghij ABCD\n\t0123456789.,;:!?-_/()'\"") + [
        "\x1c", "\x1f", "\x85", "\xa0", "\u2028", "\u3000", "\x00", "\ufffd", "é", "e\u0301", "ß",
        "中", "文", "😀", "\u200b", "\U0001f1eb\U0001f1f7",
    ]  # fmt: skip
    texts = [
        "".join(rng.choice(alphabet) for _ in range(60_000)),
        " ".join("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300))) for _ in range(800)),
        "x" * (3 * PIECE_CHARS) + " tail words",  # no place to cut for three pieces' length
        "river stone " * 20_000,
        "\n".join("0123456789" * 90 for _ in range(300)),
    ]
    for text in texts:
        pieces = list(text_pieces(text))
        assert "".join(pieces) == text and len(pieces) > 1
        assert all(piece[0] in " \n" for piece in pieces[1:])  # each cut just before a space or a line break
        assert text_tokens(text) == whole_count(text) == count_tokens([text])[0]


def test_short_texts_are_counted_exactly():
    text = "What is the derivative of x**3 + 2x with respect to x?"
    assert text_tokens(text) == count_tokens([text])[0] == whole_count(text)
    assert text_tokens("") == 0


def test_the_messages_text_is_counted_apart_from_other_strings_and_media_ceilings():
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "iVBORw0KGgo" * 1000}}
    question = {"type": "text", "text": "Which is bigger?"}
    plain = chat_input_tokens([{"role": "user", "content": [question]}], {})
    tools = [{"type": "function", "function": {"name": "measure", "description": "Measure a picture's size."}}]
    counted = chat_input_tokens([{"role": "user", "content": [question, image, image]}], {"tools": tools})
    assert counted.text == plain.text == text_tokens("Which is bigger?") + TOKENS_PER_MESSAGE + TOKENS_PER_REPLY
    assert counted.media == 2 * 5000 and counted.most == counted.text + counted.other + 10_000
    # the tools' strings and the parts' keys count as other strings; the images' payload never counts
    assert text_tokens("Measure a picture's size.") < counted.other < 40


def test_a_last_user_turn_without_text_leaves_the_request_to_the_turn_before_it():
    """An image or audio alone gives nothing to route on: the last user turn with text is the request."""
    messages = [
        {"role": "user", "content": "What is in this picture?"},
        {"role": "assistant", "content": "Send it."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
    ]
    assert request_and_context(messages) == ("What is in this picture?", "")
