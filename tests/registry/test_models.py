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


@pytest.mark.parametrize("name", ["has space", "slash/name", "", "-leading-dash", "x" * 101])
def test_llm_name_must_be_url_safe(name):
    with pytest.raises(ValidationError):
        llm_register(name=name)


def test_llm_name_url_safety_is_enforced_by_the_database_too():
    with pytest.raises(IntegrityError):
        LLM.objects.create(name="bad name")


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
