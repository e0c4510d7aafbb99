"""POST /api/v1/route and GET /api/v1/route/{id}: what a customer gets back."""

import pytest

from registry.models import LLM
from registry.tokens import count_tokens
from routing.models import Decision
from tests.fixtures.api import ROUTE, ApiClient, cheapest_llm, sample_prompts
from tests.routing.test_prompt_text import COMMON_SYSTEM_PROMPTS

pytestmark = pytest.mark.django_db

CHEAPEST = "gemini-1.5-flash-002"


def test_route_answers_with_the_llm_to_call_and_leaves_one_decision(api, fitted, tenant_and_key):
    response = api.route()
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {
        "decision_id",
        "llm",
        "predicted_quality",
        "estimated_cost_usd",
        "lambda_used",
        "lambda_reason",
        "strategy",
        "routing_state_version",
        "cluster",
        "alternatives",
        "budget",
        "notes",
        "input_tokens",
    }
    llm = LLM.objects.get(name=body["llm"]["name"])
    assert body["llm"] == {"name": llm.name, "api_base": llm.api_base, "api_model": llm.api_model}
    assert response["X-Routerhub-Model"] == llm.name
    assert 0 <= body["predicted_quality"] <= 1 and body["estimated_cost_usd"] > 0
    assert (body["strategy"], body["routing_state_version"]) == ("uniroute_kmeans", fitted.version)
    assert body["cluster"] in range(4)
    assert body["lambda_reason"] == "budget_pacing"
    assert len(body["alternatives"]) == 5 and llm.name not in {a["name"] for a in body["alternatives"]}
    budget = body["budget"]
    assert budget["limit_usd"] == 100 and budget["spent_usd"] == pytest.approx(body["estimated_cost_usd"])
    assert budget["remaining_usd"] == pytest.approx(100 - body["estimated_cost_usd"])
    assert budget["period"] == "month" and budget["period_ends_at"].endswith(("Z", "+00:00"))
    decision = Decision.objects.get()
    assert str(decision.id) == body["decision_id"] and decision.tenant == tenant_and_key[0]
    assert decision.llm == llm and decision.routed_text.startswith("What is the derivative")


def test_server_timing_splits_embedding_and_routing_time(api, fitted):
    first = api.route("Which planet is largest?")
    again = api.route("Which planet is largest?")
    timings = {}
    for response in (first, again):
        parts = dict(part.strip().split(";", 1) for part in response["Server-Timing"].split(","))
        timings.setdefault("embed", []).append(parts["embed"])
        assert set(parts) == {"embed", "route", "budget", "app"}
    assert 'desc="computed"' in timings["embed"][0] and 'desc="cached"' in timings["embed"][1]


def test_a_large_lambda_chooses_a_cheaper_llm_than_lambda_zero(api, fitted):
    costs, qualities = {}, {}
    for lam in (0.0, 1e6):
        body = api.route(sample_prompts(1)[0], **{"lambda": lam}).json()
        assert (body["lambda_used"], body["lambda_reason"]) == (lam, "explicit")
        costs[lam], qualities[lam] = body["estimated_cost_usd"], body["predicted_quality"]
    assert costs[1e6] < costs[0.0] and qualities[1e6] <= qualities[0.0]
    body = api.route(**{"lambda": 1e6}).json()
    assert body["llm"]["name"] == cheapest_llm(body["input_tokens"])


def test_lambda_zero_picks_the_best_predicted_quality(api, fitted):
    body = api.route(**{"lambda": 0})
    body = body.json()
    assert all(body["predicted_quality"] >= alt["predicted_quality"] for alt in body["alternatives"])


def test_quality_target_picks_the_cheapest_llm_that_reaches_it(api, fitted):
    body = api.route(quality_target=0.0).json()
    assert body["lambda_reason"] == "quality_target" and body["llm"]["name"] == cheapest_llm(body["input_tokens"])
    strict = api.route(quality_target=0.6).json()
    assert strict["lambda_reason"] == "quality_target"
    if strict["predicted_quality"] >= 0.6:
        cheaper_and_good = [
            a
            for a in strict["alternatives"]
            if a["predicted_quality"] >= 0.6 and a["estimated_cost_usd"] < strict["estimated_cost_usd"]
        ]
        assert cheaper_and_good == []


def test_models_restricts_the_candidates(api, fitted):
    body = api.route(models=["Yi-6B", "Llama-2-7b-hf"], **{"lambda": 0}).json()
    assert body["llm"]["name"] in {"Yi-6B", "Llama-2-7b-hf"}
    assert [a["name"] for a in body["alternatives"]] == [
        n for n in ("Yi-6B", "Llama-2-7b-hf") if n != body["llm"]["name"]
    ]


def test_max_cost_caps_the_estimated_cost(api, fitted):
    free = api.route(**{"lambda": 0}).json()
    cheapest = LLM.objects.get(name=cheapest_llm(free["input_tokens"])).expected_cost_usd(
        input_tokens=free["input_tokens"], output_tokens=256
    )
    assert free["estimated_cost_usd"] > cheapest
    cap = (free["estimated_cost_usd"] + cheapest) / 2
    capped = api.route(max_cost_usd=cap, **{"lambda": 0}).json()
    assert capped["estimated_cost_usd"] <= cap
    assert all(alternative["estimated_cost_usd"] <= cap for alternative in capped["alternatives"])


def test_tenant_defaults_apply_when_the_request_gives_none(make_tenant, fitted):
    _, key = make_tenant(name="thrifty", default_lambda=1e6)
    body = ApiClient(key).route().json()
    assert (body["lambda_used"], body["lambda_reason"]) == (1e6, "tenant_default")
    assert body["llm"]["name"] == cheapest_llm(body["input_tokens"])


def test_tenant_allowed_llms_are_the_only_candidates(make_tenant, fitted):
    tenant, key = make_tenant(name="narrow")
    tenant.allowed_llms.set(LLM.objects.filter(name__in=["Yi-6B", "gemma-7b"]))
    for lam in (0, 1e6):
        body = ApiClient(key).route(**{"lambda": lam}).json()
        assert {body["llm"]["name"], *(a["name"] for a in body["alternatives"])} == {"Yi-6B", "gemma-7b"}


def test_a_chat_is_routed_on_its_last_user_turn_and_counts_every_turn_as_input(api, fitted):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Tell me about tides."},
        {"role": "assistant", "content": "Tides follow the moon. " * 20},
        {"role": "user", "content": [{"type": "text", "text": "Solve 3x + 5 = 11 for x."}]},
    ]
    body = api.post(ROUTE, {"messages": messages}).json()
    decision = Decision.objects.get(id=body["decision_id"])
    assert decision.routed_text == "Solve 3x + 5 = 11 for x."
    only_last = api.route("Solve 3x + 5 = 11 for x.").json()
    assert body["input_tokens"] > only_last["input_tokens"] + 80


def test_a_generic_system_prompt_does_not_move_the_request_to_another_cluster(api, fitted):
    question = "Let f(x) = x^3 - 6x^2 + 11x - 6. Find all real roots of f and the sum of their squares."
    alone = api.route(question).json()
    for system in COMMON_SYSTEM_PROMPTS:
        chat = api.post(
            ROUTE, {"messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
        ).json()
        assert chat["cluster"] == alone["cluster"], system
        assert chat["predicted_quality"] == pytest.approx(alone["predicted_quality"], abs=0.05)


def test_a_request_may_name_another_fitted_strategy(api, fitted, prompt_set):
    from routing.services.state import routing_state_fit

    routing_state_fit(prompt_set=prompt_set, strategy="knn", params={"k": 5}, activate=False)
    body = api.route(strategy="knn").json()
    assert body["strategy"] == "knn" and body["cluster"] is None
    assert api.route().json()["strategy"] == "uniroute_kmeans"
    assert api.route(strategy="zero").status_code == 400


def test_the_route_answer_shows_the_hyper_parameters_of_the_state_that_decided(api, fitted):
    body = api.route().json()
    assert body["strategy_params"] == fitted.params
    assert body["strategy_params"]["n_clusters"] == 4 and body["strategy_params"]["prior_strength"] == 5.0


def test_decision_can_be_read_back(api, fitted):
    routed = api.route().json()
    body = api.get(f"{ROUTE}/{routed['decision_id']}").json()
    assert body["decision_id"] == routed["decision_id"]
    assert body["llm"] == routed["llm"] and body["feedback"] is None
    assert body["counted_usd"] == pytest.approx(routed["estimated_cost_usd"])


def test_llms_lists_the_routable_llms_with_prices_and_profiles(api, fitted):
    body = api.get("/api/v1/llms").json()
    assert body["routing_state_version"] == fitted.version
    names = {llm["name"] for llm in body["llms"]}
    assert len(names) == 29
    flash = next(llm for llm in body["llms"] if llm["name"] == CHEAPEST)
    assert (flash["usd_per_mtok_in"], flash["usd_per_mtok_out"]) == (0.075, 0.30)
    assert 0 < flash["validation_accuracy"] < 1 and flash["n_validation_outcomes"] > 0


def test_health_reports_database_routing_state_and_broker_to_staff(fitted, settings, admin_client):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = admin_client.get("/api/v1/health")
    body = response.json()
    assert response.status_code == 200
    assert body["database"]["ok"] and body["routing_state"] == {
        "ok": True,
        "version": fitted.version,
        "strategy": "uniroute_kmeans",
        "llms": 29,
    }
    assert body["status"] == "degraded" and body["broker"]["ok"] is False and body["broker"]["error"]
    assert ApiClient().get("/api/v1/health").json() == {"status": "degraded"}  # anonymous: the status only


def test_health_is_unavailable_without_a_routing_state(db, admin_client):
    response = admin_client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable" and not response.json()["routing_state"]["ok"]
    anonymous = ApiClient().get("/api/v1/health")
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "unavailable"}


def test_a_long_prompt_is_stored_as_routed_and_its_tokens_are_counted_exactly(api, fitted, monkeypatch):
    monkeypatch.setattr("routing.prompt_text.EMBED_MAX_CHARS", 1000)
    sentence = "The mitochondria is the powerhouse of the cell. "
    short = api.route(sentence * 50).json()  # ~2,400 characters: counted in one piece
    long = api.route(sentence * 500).json()  # ~24,000 characters: counted in pieces, as exactly
    assert long["input_tokens"] == 10 * short["input_tokens"] == 10 * count_tokens([sentence * 50])[0]
    assert len(Decision.objects.get(id=long["decision_id"]).routed_text) == 1000
