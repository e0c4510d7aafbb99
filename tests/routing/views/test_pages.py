"""Each dashboard page shows what a person looks for, with numbers formatted for people."""

import html as html_entities
import json
import re
from decimal import Decimal

import numpy as np
import pytest
from django.db.models import Sum

from registry.models import LLM
from routing.models import BudgetPeriod, Decision, LLMProfile
from routing.selectors.clusters import cluster_map
from routing.selectors.curves import held_out
from routing.selectors.decisions import DecisionStatus, decision_page
from routing.selectors.routers import active_router
from routing.views.formatting import quality, usd
from tests.fixtures.api import ApiClient
from tests.fixtures.dashboard import evaluation_run, staff_user

pytestmark = pytest.mark.django_db

LONG_FLOAT = re.compile(r"\d\.0*[1-9]\d{6,}")  # 0.34701859951019287: never shown to people


def text_of(response) -> str:
    assert response.status_code == 200, response.content[:500]
    return html_entities.unescape(response.content.decode())


def cheapest_held_out_llm() -> str:
    """The LLM with the lowest price at the held-out prompts' mean length (what a huge λ picks)."""
    figures = held_out(active_router())
    return figures.llm_names[int(np.argmin(figures.costs_usd))]


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg .*?</svg>", html, flags=re.S)


def test_overview_shows_the_totals_budgets_and_a_chart_with_a_table_for_each_figure(site):
    html = text_of(site.clients["staff"].get("/"))
    spent = Decision.objects.aggregate(s=Sum("reserved_usd"))["s"]
    assert f"<strong>9</strong> requests, <strong>{usd(spent)}</strong> spent" in html
    charts = svgs(html)
    assert len(charts) == 5 + 2  # four daily/share charts, 402s, and one budget chart per tenant
    assert all('role="img"' in svg and "<title>" in svg for svg in charts)
    assert html.count("Data as a table") == len(charts)
    period = BudgetPeriod.objects.get(tenant=site.tenant_a)
    assert f"alpha has spent {usd(period.spent_usd)} of $100.00" in html
    assert not LONG_FLOAT.search(html)


def test_router_page_draws_the_held_out_curve_and_says_what_qnc_is(site):
    html = text_of(site.clients["staff"].get("/router/"))
    assert re.search(r"The router (reaches|does not reach) the best LLM's accuracy \([^,]+, 0\.\d{3}\)", html)
    figures = held_out(active_router())
    assert f"evaluated on {figures.prompt_count:,} held-out prompts" in html
    heatmap = next(svg for svg in svgs(html) if "Per-cluster error" in svg)
    for llm in active_router().llms:
        assert llm.name in heatmap
    clusters = cluster_map(active_router()).clusters
    assert len(clusters) == 4
    assert html.count('<div class="prompt">') == sum(min(3, c.size) for c in clusters)  # three examples each
    for c in clusters:
        assert f"#{c.index} · {c.label}" in html
    assert not LONG_FLOAT.search(html)


def test_a_huge_lambda_routes_everything_to_the_cheapest_llm_on_the_router_and_llm_pages(site):
    cheapest = cheapest_held_out_llm()
    router_page = text_of(site.clients["staff"].get("/router/?lambda=1e9"))
    assert router_page.count(f"Wins: <strong>{cheapest}</strong> (100%") == 4
    quality_first = text_of(site.clients["staff"].get("/router/?lambda=0"))
    assert quality_first.count(f"Wins: <strong>{cheapest}</strong>") < 4
    llm = LLM.objects.get(name=cheapest)
    llm_page = text_of(site.clients["staff"].get(f"/llms/{llm.id}/?lambda=1e9"))
    assert "Chosen for <strong>100.0%</strong> of the held-out prompts" in llm_page
    assert f"{usd(llm.usd_per_mtok_in)} / 1M input tokens, {usd(llm.usd_per_mtok_out)} / 1M output tokens" in llm_page


def test_held_out_operating_points_run_from_best_quality_to_the_cheapest_llm(site):
    figures = held_out(active_router())
    cheapest = figures.llm_names.index(cheapest_held_out_llm())
    assert figures.operating_point(1e9) == pytest.approx((figures.costs_usd[cheapest], figures.accuracy[cheapest]))
    low_cost, low_accuracy = figures.operating_point(0.0)
    assert low_cost > figures.costs_usd[cheapest]
    assert figures.strategy.quality.max() >= low_accuracy - 1e-12  # the curve passes through λ = 0's point
    qnc = figures.qnc()
    assert qnc.best_accuracy == pytest.approx(figures.accuracy.max())


def test_llm_list_shows_each_llm_with_its_profile_and_traffic(site):
    html = text_of(site.clients["staff"].get("/llms/"))
    router = active_router()
    for llm in router.llms:
        assert f">{llm.name}</a>" in html
        assert quality(llm.validation_error) in html
    assert not LONG_FLOAT.search(html)


def test_evaluation_run_page_shows_curves_and_paired_differences(site):
    run = evaluation_run(prompt_set_id=active_router().prompt_set_id)
    listing = text_of(site.clients["staff"].get("/evaluations/"))
    assert f'href="/evaluations/{run.id}/"' in listing and "knn (0.570)" in listing
    html = text_of(site.clients["staff"].get(f"/evaluations/{run.id}/"))
    se = np.std([0.02, 0.03, 0.01], ddof=1) / np.sqrt(3)
    assert f"+0.0200 ± {se:.4f}" in html  # knn − zero, paired by split
    assert f"−0.0200 ± {se:.4f}" in html  # zero − knn
    curves = next(svg for svg in svgs(html) if "Deferral curves of the first split" in svg)
    assert "knn" in curves and "<polyline" in curves


def test_decision_filters_by_llm_status_and_date(site):
    staff = site.clients["staff"]
    decision = Decision.objects.get(id=site.decisions_a[0])
    by_llm = text_of(staff.get(f"/decisions/?llm={decision.llm_id}"))
    shown = set(re.findall(r'href="/decisions/([0-9a-f-]{36})/"', by_llm))
    assert shown == {str(d.id) for d in Decision.objects.filter(llm_id=decision.llm_id)}
    key = site.tenant_a.api_keys.first()
    assert key is not None
    with_feedback = text_of(staff.get("/decisions/?status=with_feedback"))
    assert "No decisions match." in with_feedback
    Decision.objects.filter(id=decision.id).update(feedback_at=decision.created_at, quality_score=1.0)
    with_feedback = text_of(staff.get("/decisions/?status=with_feedback"))
    assert set(re.findall(r'href="/decisions/([0-9a-f-]{36})/"', with_feedback)) == {str(decision.id)}
    tomorrow = (decision.created_at.date()).fromordinal(decision.created_at.date().toordinal() + 1)
    assert "No decisions match." in text_of(staff.get(f"/decisions/?since={tomorrow}"))
    backwards = text_of(staff.get(f"/decisions/?since={tomorrow}&until={decision.created_at.date()}"))
    assert "since: Must not be after “until”." in backwards
    assert "Enter a valid date." in text_of(staff.get("/decisions/?since=yesterday"))


def test_decision_pages_come_newest_first_without_repeats(site):
    seen, cursor, pages = [], None, 0
    while True:
        page = decision_page(tenant=None, before=cursor, size=4)
        seen += [d.id for d in page.decisions]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3 and len(seen) == len(set(seen)) == 9
    assert seen == list(Decision.objects.order_by("-created_at", "-id").values_list("id", flat=True))
    assert len(decision_page(tenant=site.tenant_b, status=DecisionStatus.AWAITING_FEEDBACK).decisions) == 3
    assert decision_page(tenant=None, before="not-a-cursor").decisions[0].id == seen[0]


def test_decision_page_explains_the_choice(site):
    decision = Decision.objects.get(id=site.decisions_a[0])
    html = text_of(site.clients["a"].get(f"/decisions/{decision.id}/"))
    assert "The request asked for λ = 50." in html
    assert f'<strong><a href="/llms/{decision.llm_id}/">{decision.llm.name}</a></strong>' in html
    for alternative in decision.alternatives:
        assert f"<td>{alternative['name']}</td>" in html
    assert re.search(rf"#{decision.cluster}: [a-z ]+ \d+%", html)  # the cluster, labelled by its categories


def test_try_it_ranks_like_the_route_api_and_spends_nothing(site, make_tenant):
    prompt = "A ball is thrown upwards at 12 m/s. How high does it rise?"
    before = (Decision.objects.count(), BudgetPeriod.objects.get(tenant=site.tenant_a).spent_usd)
    page = text_of(site.clients["a"].post("/try/", {"prompt": prompt, "lambda": "50"}))
    chosen = re.search(r'Chosen: <strong id="chosen">([^<]+)</strong>', page).group(1)
    assert (Decision.objects.count(), BudgetPeriod.objects.get(tenant=site.tenant_a).spent_usd) == before
    _, key = make_tenant(name="gamma")
    assert ApiClient(key).route(prompt, **{"lambda": 50.0}).json()["llm"]["name"] == chosen


def rank(client, **body):
    return client.post("/try/rank", json.dumps(body), content_type="application/json")


def test_the_slider_endpoint_reranks_and_names_bad_fields(site):
    staff = site.clients["staff"]
    by_quality = rank(staff, prompt="What is the capital of France?", **{"lambda": 0}).json()
    by_price = rank(staff, prompt="What is the capital of France?", **{"lambda": 1e9}).json()
    cheapest = min(by_price["ranking"], key=lambda r: (r["estimated_cost_usd"], r["objective"]))["name"]
    assert by_price["chosen"] == by_price["ranking"][0]["name"] == cheapest
    assert by_quality["chosen"] == by_quality["ranking"][0]["name"] != cheapest
    qualities = [r["predicted_quality"] for r in by_quality["ranking"]]
    assert qualities == sorted(qualities, reverse=True)
    bad = rank(staff, prompt="hi", **{"lambda": -1})
    assert bad.status_code == 400 and "lambda" in bad.json()["error"]["fields"]
    missing = rank(staff, **{"lambda": 1})
    assert missing.status_code == 400 and "prompt" in missing.json()["error"]["fields"]
    unknown = rank(staff, prompt="hi", tenant="nobody", **{"lambda": 1})
    assert unknown.status_code == 400 and unknown.json()["error"]["fields"] == {"tenant": ["No tenant with this name."]}


def test_a_tenant_tries_prompts_among_its_allowed_llms_only(site):
    site.tenant_a.allowed_llms.set(LLM.objects.filter(name__in=["Llama-2-7b-hf", "Mistral-7B-v0.1"]))
    result = rank(site.clients["a"], prompt="What is 2 + 2?", **{"lambda": 0}).json()
    allowed = [r["name"] for r in result["ranking"] if r["allowed"]]
    assert sorted(allowed) == ["Llama-2-7b-hf", "Mistral-7B-v0.1"] and result["chosen"] in allowed
    assert result["ranking"][:2] == [r for r in result["ranking"] if r["allowed"]]


def test_budget_numbers_use_people_friendly_money():
    assert [usd(v) for v in (0, 1234.5, 12.345, 0.0347, 0.0000012345, Decimal("0.00150"))] == [
        "$0",
        "$1,234.50",
        "$12.35",
        "$0.0347",
        "$0.00000123",
        "$0.00150",
    ]


def test_a_strategy_without_clusters_gets_display_groups_on_the_cluster_map(prompt_set, make_tenant):
    from django.test import Client

    from routing.caches import reset_all
    from routing.services.state import routing_state_fit

    routing_state_fit(prompt_set=prompt_set, strategy="knn", params={"k": 5})
    reset_all()
    clusters = cluster_map(active_router())
    assert not clusters.own_clusters and len(clusters.clusters) == sum(1 for c in clusters.clusters if c.size > 0)
    assert clusters.errors.shape == (len(active_router().llms), len(clusters.clusters))
    assert all(c.label for c in clusters.clusters)
    client = Client()
    client.force_login(staff_user("root", "view_routingstate"))
    html = text_of(client.get("/router/"))
    assert "knn has no clusters of its own" in html
    assert html.count('class="cluster"') == len(clusters.clusters)


def test_bad_query_parameters_get_a_page_not_an_error(site):
    staff = site.clients["staff"]
    for path in ("/router/?lambda=abc", "/router/?lambda=-3", "/router/?lambda=nan", "/llms/?tenant=nobody"):
        assert staff.get(path).status_code == 200, path
    assert "Select a valid choice." in text_of(staff.get("/decisions/?llm=abc"))
    assert text_of(staff.get("/decisions/?before=garbage")).count('href="/decisions/') >= 9
    assert staff.get("/llms/999999/").status_code == 404
    assert staff.get("/evaluations/999999/").status_code == 404
    tried = text_of(staff.post("/try/", {"prompt": "hello", "lambda": "lots"}))
    assert "λ must be a number from 0 to 1e+10." in tried
    assert staff.get("/router/?lambda=1e300").status_code == 200


SPECIALIST_CHOICE = {  # what profile_choice returns for an LLM right on one subject only
    "prior_strength": 1.4142,
    "tuned_prior_strength": 50.0,
    "own_prior_strength": 1.4142,
    "departure": 110.98,
    "threshold": 27.72,
    "departs": True,
    "clusters": 160,
}


def test_an_llm_page_says_how_its_profile_was_smoothed(site):
    profile = LLMProfile.objects.filter(state__is_active=True).select_related("llm").order_by("llm__name").first()
    staff = site.clients["staff"]

    generalist_page = text_of(staff.get(f"/llms/{profile.llm_id}/"))
    LLMProfile.objects.filter(id=profile.id).update(smoothing=SPECIALIST_CHOICE)
    specialist_page = text_of(staff.get(f"/llms/{profile.llm_id}/"))

    # The slice's fit has 4 clusters and too few validation prompts for finer ones: every LLM as the fleet.
    assert "smoothed as the training LLMs: tuned prior strength 5 on 4 clusters" in generalist_page
    assert (
        "smoothed its own: prior strength 1.4142 on 160 clusters — its answers depart from the tuned prior (50) "
        "by a log-likelihood ratio of 111.0, above the 27.7 the training LLMs allow"
    ) in specialist_page
