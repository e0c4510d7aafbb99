"""An LLM's gateway_fields (registry/gateway_fields.py): checked when saved, and what a call that sets them costs."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from registry.models import LLM
from registry.services import llm_register
from routing.selectors.routers import RoutableLLM

pytestmark = pytest.mark.django_db


def routable(metadata: dict, **prices) -> RoutableLLM:
    prices = {"usd_per_mtok_in": 1.0, "usd_per_mtok_out": 2.0, **prices}
    return RoutableLLM.of(LLM(id=1, name="m", metadata=metadata, **prices))


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ([], "must be an object"),
        ({"service_tier": 5}, "gateway_fields.service_tier`: must be an object"),
        ({"service_tier": {"usd_per_mtok_in": -1}}, "usd_per_mtok_in must be a non-negative number"),
        ({"service_tier": {"usd_per_call": "0.1"}}, "usd_per_call must be a non-negative number"),
        ({"service_tier": {"usd_per_token": 1}}, "unknown key 'usd_per_token'"),
    ],
)
def test_a_wrongly_written_entry_is_refused_when_the_llm_is_saved(fields, problem):
    with pytest.raises(ValidationError) as refused:
        llm_register(name="m", metadata={"gateway_fields": fields})
    assert any(problem in message for message in refused.value.message_dict["metadata"])
    assert not LLM.objects.exists()


def test_a_call_that_sets_accepted_fields_costs_their_prices():
    llm = routable(
        {
            "gateway_fields": {
                "service_tier": {"usd_per_mtok_in": 3.0, "usd_per_mtok_out": 8.0},
                "web_search_options": {"usd_per_mtok_out": 5.0, "usd_per_call": 0.03},
                "top_k": {},
            }
        }
    )
    assert llm.priced_for(()) is llm and llm.expected_cost_usd(input_tokens=1e6, output_tokens=1e6) == 3.0
    assert llm.priced_for(["top_k"]).expected_cost_usd(input_tokens=1e6, output_tokens=1e6) == 3.0
    priority = llm.priced_for(["service_tier"])
    assert priority.expected_cost_usd(input_tokens=1e6, output_tokens=1e6) == 11.0
    both = llm.priced_for(["service_tier", "web_search_options"])  # the highest price of each kind, every fee
    assert both.expected_cost_usd(input_tokens=1e6, output_tokens=1e6) == pytest.approx(3.0 + 8.0 + 0.03)
    assert both.priced_for(["service_tier", "web_search_options"]) == both  # pricing twice changes nothing
    assert llm.priced_for(["service_tier", "best_of"]) is None and llm.unaccepted(["best_of", "top_k"]) == ["best_of"]


def test_a_per_query_llm_adds_the_fees_and_a_wrong_entry_accepts_nothing():
    per_query = routable({"gateway_fields": {"web_search_options": {"usd_per_call": 0.5}}}, usd_per_query=0.01)
    assert per_query.priced_for(["web_search_options"]).expected_cost_usd(input_tokens=9, output_tokens=9) == 0.51
    broken = routable({"gateway_fields": {"service_tier": {"usd_per_mtok_in": "free"}, "top_k": {}}})
    assert broken.unaccepted(["service_tier", "top_k"]) == ["service_tier"]
