import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from registry.models import LLM, Outcome, Prompt, PromptSet
from registry.services import llm_register, llms_set_active

pytestmark = pytest.mark.django_db


@pytest.fixture
def prompt():
    prompt_set = PromptSet.objects.create(name="s")
    return Prompt.objects.create(
        prompt_set=prompt_set, external_id="1", text="What is 2+2?", split="train", text_sha256="x"
    )


PROVIDER_NAMES = [
    "meta-llama/Llama-3.1-70B-Instruct",
    "openai/gpt-4o",
    "Llama-3.1-405B-Inst@sambanova",
    "qwen2.5:7b",
    "WizardLM/WizardLM-13B-V1.2",
    "Mixtral 8x7B (Together)",
    "模型-7B",
    "x",
    "x" * 200,
]
BAD_NAMES = [
    "",
    " leading-space",
    "trailing-space ",
    "tab\tinside",
    "new\nline",
    "nul\x00",
    "del\x7f",
    "c1\x85",
    "\u3000ideographic-space-first",
    "x" * 201,
]


@pytest.mark.parametrize("name", PROVIDER_NAMES)
def test_llm_names_as_providers_write_them_are_accepted(name):
    assert llm_register(name=name).name == name
    assert LLM.objects.get(name=name).name == name


@pytest.mark.parametrize("name", BAD_NAMES)
def test_llm_names_with_control_characters_or_surrounding_whitespace_or_too_long_are_refused(name):
    with pytest.raises(ValidationError) as error:
        llm_register(name=name)
    assert "name" in error.value.message_dict


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n and "\x00" not in n and len(n) <= 200])
def test_the_database_enforces_the_same_name_rule(name):
    # The CHECK constraint reads the same pattern as the validator (PostgreSQL cannot store NUL at
    # all, and the column's length bounds the rest).
    with pytest.raises(IntegrityError), transaction.atomic():
        LLM.objects.create(name=name)
    for good in PROVIDER_NAMES:
        LLM.objects.create(name=good)
    assert LLM.objects.count() == len(PROVIDER_NAMES)


def test_negative_price_is_rejected_by_validation_and_database():
    with pytest.raises(ValidationError):
        llm_register(name="cheap", usd_per_mtok_in=-1)
    with pytest.raises(IntegrityError):
        LLM.objects.create(name="cheap", usd_per_query=-0.01)


def test_llm_names_are_unique():
    llm_register(name="gpt-x")
    with pytest.raises(ValidationError):
        llm_register(name="gpt-x")


def test_one_outcome_per_llm_and_prompt(prompt):
    llm = llm_register(name="m")
    Outcome.objects.create(llm=llm, prompt=prompt, score=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Outcome.objects.create(llm=llm, prompt=prompt, score=0)
    assert Outcome.objects.count() == 1


@pytest.mark.parametrize("score", [-0.1, 1.5])
def test_outcome_score_must_be_in_unit_interval(prompt, score):
    llm = llm_register(name="m")
    with pytest.raises(IntegrityError):
        Outcome.objects.create(llm=llm, prompt=prompt, score=score)


def test_external_id_is_unique_within_a_set_only(prompt):
    other_set = PromptSet.objects.create(name="other")
    Prompt.objects.create(prompt_set=other_set, external_id="1", text="t", split="test", text_sha256="y")
    with pytest.raises(IntegrityError):
        Prompt.objects.create(prompt_set=prompt.prompt_set, external_id="1", text="t", split="test", text_sha256="y")


def test_expected_cost_prefers_per_query_price():
    assert (
        LLM(name="a", usd_per_query=0.5, usd_per_mtok_in=10).expected_cost_usd(input_tokens=100, output_tokens=100)
        == 0.5
    )
    per_token = LLM(name="b", usd_per_mtok_in=1.0, usd_per_mtok_out=3.0)
    assert per_token.expected_cost_usd(input_tokens=1000, output_tokens=500) == pytest.approx(
        (1000 * 1 + 500 * 3) / 1e6
    )
    assert LLM(name="c").expected_cost_usd(input_tokens=1, output_tokens=1) is None


def test_bulk_deactivate_reports_only_changed_rows():
    a, b = llm_register(name="a"), llm_register(name="b", is_active=False)
    assert llms_set_active(llms=[a, b], active=False) == 1
    assert not LLM.objects.filter(is_active=True).exists()
