"""What one gateway attempt is charged (services/gateway.attempt_charge): the rules of
docs/gateway-and-budgets.md, *What a call is charged*, at one LLM's prices (no database)."""

from decimal import Decimal

import pytest

from registry.tokens import count_tokens
from routing.prompt_text import ChatInput
from routing.selectors.routers import RoutableLLM
from routing.services.gateway import Billing, CallRecord, attempt_charge, metered_cost

LLM = RoutableLLM(
    id=1,
    name="org/model",
    provider="org",
    api_base="",
    api_model="",
    usd_per_mtok_in=1.0,
    usd_per_mtok_out=10.0,
    usd_per_query=None,
    validation_error=0.5,
    n_validation_outcomes=0,
    uses_fallback=False,
)
ANSWER = "Once upon a time there was a router that paid its bills."
PROMPT = ChatInput(text=30, other=0, media=0)  # routerhub's count of a text prompt
TEXT, IMAGES = 30, 2 * 5000  # a prompt with two images, at a ceiling of 5,000 tokens each
WITH_IMAGES = ChatInput(text=TEXT, other=0, media=IMAGES)


def usd(input_tokens: int, output_tokens: int) -> Decimal:
    return Decimal(input_tokens * 1 + output_tokens * 10) / Decimal(10**6)


def charge(billing, usage=None, text="", limit=50, prompt=PROMPT):
    return attempt_charge(llm=LLM, billing=billing, prompt=prompt, output_limit=limit, usage=usage, answer_text=text)


def test_an_attempt_no_upstream_billed_costs_nothing():
    nothing = charge(Billing.NONE, usage={"prompt_tokens": 9, "completion_tokens": 9}, text=ANSWER)
    assert (nothing.cost_usd, nothing.input_tokens, nothing.output_tokens) == (0, None, None)


def test_an_answer_is_charged_its_usage_within_what_routerhub_counted_and_reserved():
    seen = charge(Billing.SEEN, usage={"prompt_tokens": 30, "completion_tokens": 40}, text=ANSWER)
    assert (seen.input_tokens, seen.output_tokens, seen.cost_usd) == (30, 40, usd(30, 40))


@pytest.mark.parametrize("usage", [None, {"prompt_tokens": 1, "completion_tokens": 1}, {"total_tokens": 3}, "junk"])
def test_usage_missing_or_below_routerhubs_count_gives_way_to_that_count(usage):
    counted = count_tokens([ANSWER])[0]
    seen = charge(Billing.SEEN, usage=usage, text=ANSWER)
    assert (seen.input_tokens, seen.output_tokens, seen.cost_usd) == (30, counted, usd(30, counted))


def test_absurd_usage_is_capped_at_what_the_call_reserved():
    seen = charge(Billing.SEEN, usage={"prompt_tokens": 10**12, "completion_tokens": 10**12}, text=ANSWER)
    assert (seen.input_tokens, seen.output_tokens) == (30, 50)  # the prompt reserved, and max_tokens
    unbounded = charge(Billing.SEEN, usage={"completion_tokens": 10**6}, limit=None)
    assert unbounded.output_tokens == 10**6  # no output limit known: nothing routerhub can hold it to


@pytest.mark.parametrize(
    ("reported", "charged"),
    [
        (TEXT + 2 * 85, TEXT + 2 * 85),  # the provider's count of two small images: believed
        (TEXT + IMAGES, TEXT + IMAGES),  # at their ceilings: still believed
        (10**9, TEXT + IMAGES),  # beyond the ceilings: not believed
        (5, TEXT),  # below the text sent: not believed
        (None, TEXT + IMAGES),  # no count: all the input reserved
    ],
)
def test_media_parts_are_charged_at_the_providers_count_within_their_ceilings(reported, charged):
    usage = {"completion_tokens": 40} if reported is None else {"prompt_tokens": reported, "completion_tokens": 40}
    seen = charge(Billing.SEEN, usage=usage, prompt=WITH_IMAGES)
    assert (seen.input_tokens, seen.output_tokens, seen.cost_usd) == (charged, 40, usd(charged, 40))


def test_an_attempt_cut_off_before_its_answer_was_seen_is_charged_the_output_it_reserved():
    unseen = charge(Billing.UNSEEN, text="Once")
    assert (unseen.input_tokens, unseen.output_tokens, unseen.cost_usd) == (30, 50, usd(30, 50))
    unseen = charge(Billing.UNSEEN, prompt=WITH_IMAGES)  # no count from the provider: all the input reserved
    assert (unseen.input_tokens, unseen.output_tokens) == (TEXT + IMAGES, 50)
    assert charge(Billing.UNSEEN, limit=4096).output_tokens == 4096  # however little was seen


def test_a_call_is_charged_every_attempt_an_upstream_may_bill():
    timed_out = charge(Billing.UNSEEN)
    record = CallRecord(
        status="ok",
        attempts=[],
        latency_ms=1.0,
        billing=Billing.SEEN,
        usage={"prompt_tokens": 30, "completion_tokens": 40},
        output_limit=50,
        charges=[timed_out],
    )
    total = metered_cost(record=record, llm=LLM, prompt=PROMPT)
    assert total.cost_usd == usd(30, 50) + usd(30, 40)
    assert (total.input_tokens, total.output_tokens) == (30 + 30, 50 + 40)
    failed = metered_cost(record=CallRecord(status="failed", attempts=[], latency_ms=1.0), llm=LLM, prompt=PROMPT)
    assert failed.cost_usd == 0 and failed.input_tokens is None
