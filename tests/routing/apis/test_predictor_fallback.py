"""A Routoo-style predictor scores only its training LLMs; for any other LLM it falls back and says so."""

import pytest

from registry.models import LLM, Outcome, Prompt
from registry.services import llm_register
from routing.caches import reset_all
from routing.selectors import routers
from routing.services.state import llm_profile, routing_state_fit

pytestmark = pytest.mark.django_db


def test_an_llm_unseen_by_the_predictor_is_routed_with_the_fallback_and_the_answer_says_so(api, prompt_set):
    trained_on = list(LLM.objects.exclude(name="gemini-1.5-pro-002"))  # every LLM but one is a training LLM
    state = routing_state_fit(
        prompt_set=prompt_set, strategy="routoo_predictor", params={"l2_grid": [1e-4]}, train_llms=trained_on
    )
    # The newcomer is right on every validation prompt, and free: the router must pick it.
    newcomer = llm_register(name="newcomer", usd_per_query=0.0)
    Outcome.objects.bulk_create(
        Outcome(llm=newcomer, prompt=p, score=1.0, source="profiled")
        for p in Prompt.objects.filter(prompt_set=prompt_set, split="validation")
    )
    llm_profile(llm=newcomer, state=state)
    reset_all()
    router = routers.active_router(max_age_seconds=0)
    fallback = {llm.name for llm in router.llms if llm.uses_fallback}
    assert fallback == {"gemini-1.5-pro-002", "newcomer"}

    body = api.route(**{"lambda": 0}).json()
    assert body["strategy"] == "routoo_predictor"
    assert body["llm"]["name"] == "newcomer"
    assert any("no predictor head for newcomer" in note for note in body["notes"])
    listed = {llm["name"]: llm["uses_fallback"] for llm in api.get("/api/v1/llms").json()["llms"]}
    assert listed["newcomer"] and listed["gemini-1.5-pro-002"] and not listed["gemini-1.5-flash-002"]
