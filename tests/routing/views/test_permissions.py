"""Who sees what: staff with the permissions of what a page shows, every tenant; a tenant user only
their tenant; no one anonymous."""

import json

import pytest

from registry.models import LLM
from routing.models import Decision
from tests.fixtures.dashboard import dashboard_pages, evaluation_run, login, staff_user

pytestmark = pytest.mark.django_db


def pages(site) -> dict[str, str]:
    run = evaluation_run(prompt_set_id=site.tenant_a.decisions.first().state.prompt_set_id)
    return dashboard_pages(site, llm_id=LLM.objects.get(name="gemini-1.5-flash-002").id, run=run)


# What each role gets on each page: an HTTP status.
EXPECTED = {
    "staff": dict.fromkeys(
        ["overview", "router", "llms", "llm", "evaluations", "evaluation", "decisions", "decision_a", "try", "shadow"],
        200,
    ),
    "a": {
        **dict.fromkeys(["overview", "router", "llms", "llm", "decisions", "decision_a", "try", "shadow"], 200),
        "evaluations": 403,
        "evaluation": 403,
    },
    "b": {
        **dict.fromkeys(["overview", "router", "llms", "llm", "decisions", "try", "shadow"], 200),
        "decision_a": 404,
        "evaluations": 403,
        "evaluation": 403,
    },
    "stranger": dict.fromkeys(
        ["overview", "router", "llms", "llm", "evaluations", "evaluation", "decisions", "decision_a", "try", "shadow"],
        403,
    ),
    # being staff alone opens nothing: each page asks for the model permissions of what it shows
    "bare_staff": dict.fromkeys(
        ["overview", "router", "llms", "llm", "evaluations", "evaluation", "decisions", "decision_a", "try", "shadow"],
        403,
    ),
}


def test_every_page_answers_each_role_as_its_permissions_say(site):
    paths = pages(site)
    for role in ("staff", "bare_staff", "a", "b", "stranger"):
        answered = {name: site.clients[role].get(path).status_code for name, path in paths.items()}
        assert answered == EXPECTED[role], role
    for path in paths.values():  # anonymous visitors log in first, and come back
        response = site.clients["anonymous"].get(path)
        assert (response.status_code, response["Location"]) == (302, f"/login/?next={path}")
    refused = site.clients["stranger"].get("/")
    assert "is not linked to a tenant" in refused.content.decode()
    staff_only = site.clients["a"].get("/evaluations/")
    assert "This page is for staff" in staff_only.content.decode()


def test_tenant_users_see_only_their_own_decisions_and_staff_see_all(site):
    page_a = site.clients["a"].get("/decisions/").content.decode()
    page_b = site.clients["b"].get("/decisions/").content.decode()
    assert all(d in page_a for d in site.decisions_a) and not any(d in page_a for d in site.decisions_b)
    assert all(d in page_b for d in site.decisions_b) and not any(d in page_b for d in site.decisions_a)
    # the tenant filter is for staff: a tenant user naming another tenant still sees only their own
    sneaky = site.clients["a"].get("/decisions/?tenant=beta").content.decode()
    assert not any(d in sneaky for d in site.decisions_b) and all(d in sneaky for d in site.decisions_a)
    # staff see every tenant's, and can narrow the list to one
    everything = site.clients["staff"].get("/decisions/").content.decode()
    assert all(d in everything for d in site.decisions_a + site.decisions_b)
    only_b = site.clients["staff"].get("/decisions/?tenant=beta").content.decode()
    assert all(d in only_b for d in site.decisions_b) and not any(d in only_b for d in site.decisions_a)


def test_the_overview_counts_only_the_viewers_tenant(site):
    assert "<strong>6</strong> requests" in site.clients["a"].get("/").content.decode()
    assert "<strong>3</strong> requests" in site.clients["b"].get("/").content.decode()
    assert "<strong>9</strong> requests" in site.clients["staff"].get("/").content.decode()
    assert "<strong>3</strong> requests" in site.clients["staff"].get("/?tenant=beta").content.decode()
    # the budgets section lists the viewer's own tenant only
    page_b = site.clients["b"].get("/").content.decode()
    assert "beta has spent" in page_b and "alpha has spent" not in page_b


def test_the_router_page_marks_only_the_tenant_users_own_operating_point(site):
    page_a = site.clients["a"].get("/router/").content.decode()
    staff = site.clients["staff"].get("/router/").content.decode()
    assert "alpha (λ 50)" in page_a and "beta" not in page_a
    assert "alpha (λ 50)" in staff and "beta (λ 5,000)" in staff


def test_jobs_and_per_tenant_traffic_on_an_llm_page_are_for_staff(site):
    path = pages(site)["llm"]
    staff = site.clients["staff"].get(path).content.decode()
    tenant = site.clients["a"].get(path).content.decode()
    assert "Recent jobs" in staff and "Recent jobs" not in tenant
    assert "beta" not in tenant


def rank(client, body):
    return client.post("/try/rank", json.dumps(body), content_type="application/json")


def test_the_try_it_endpoint_needs_a_dashboard_login_and_the_users_own_tenant(site):
    body = {"prompt": "What is 2 + 2?", "lambda": 0}
    anonymous = rank(site.clients["anonymous"], body)
    assert anonymous.status_code == 403 and anonymous.json()["error"]["code"] == "not_authenticated"
    stranger = rank(site.clients["stranger"], body)
    assert stranger.status_code == 403 and "not linked to a tenant" in stranger.json()["error"]["message"]
    assert rank(site.clients["a"], body).status_code == 200
    # a tenant user tries prompts as their own tenant only
    response = rank(site.clients["a"], {"prompt": "What is 2 + 2?", "lambda": 0, "tenant": "beta"})
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Only staff may try prompts as another tenant."
    assert rank(site.clients["staff"], {"prompt": "What is 2 + 2?", "lambda": 0, "tenant": "beta"}).status_code == 200


def test_staff_without_view_decision_read_no_decision_and_no_prompt(site):
    """The API asks for routing.view_decision before it shows a decision; so do the pages."""
    decision = Decision.objects.get(id=site.decisions_a[0])
    prompt = decision.routed_text
    assert prompt in site.clients["staff"].get(f"/decisions/{decision.id}/").content.decode()
    client = login(staff_user("llm-viewer", "view_llm", "view_routingstate"))
    for path in ("/decisions/", f"/decisions/{decision.id}/", "/"):
        response = client.get(path)
        page = response.content.decode()
        assert response.status_code == 403, path
        assert "lacks the permission(s) this page needs: routing.view_decision" in page
        assert prompt not in page and str(decision.id) not in page
    # the pages it may open are the ones it is offered
    llms = client.get("/llms/").content.decode()
    assert 'href="/llms/"' in llms and 'href="/router/"' in llms
    assert 'href="/decisions/"' not in llms and "requests (30 days)" not in llms  # traffic is decisions' data
    api = client.get(f"/api/v1/route/{decision.id}")
    assert api.status_code == 403


def test_each_staff_permission_opens_its_own_pages_only(site):
    grants = {
        "view_decision": {"overview", "decisions", "decision_a"},
        "view_routingstate": {"router", "try"},
        "view_llm": {"llms", "llm"},
        "view_evaluationrun": {"evaluations", "evaluation"},
        "view_shadowevaluation": {"shadow"},
    }
    paths = pages(site)
    for codename, opened in grants.items():
        client = login(staff_user(f"only-{codename}", codename))
        answered = {name: client.get(path).status_code for name, path in paths.items()}
        assert {name for name, status in answered.items() if status == 200} == opened, codename
        assert {status for name, status in answered.items() if name not in opened} == {403}, codename


def test_sections_beyond_a_pages_permission_stay_hidden(site):
    llm_path = pages(site)["llm"]
    client = login(staff_user("llm-only", "view_llm", "view_decision"))
    page = client.get(llm_path).content.decode()
    assert "Traffic and spend" in page and "Recent jobs" not in page  # jobs need routing.view_job
    overview = client.get("/").content.decode()
    assert "Budgets this period" not in overview and "alpha has spent" not in overview  # view_budgetperiod
    assert "Budgets this period" in site.clients["staff"].get("/").content.decode()
    body = {"prompt": "What is 2 + 2?", "lambda": 0, "tenant": "beta"}
    router_only = login(staff_user("router-only", "view_routingstate"))
    assert rank(router_only, {"prompt": "What is 2 + 2?", "lambda": 0}).status_code == 200
    named = rank(router_only, body)  # trying as a tenant shows its allowed LLMs and defaults at work
    assert named.status_code == 403 and "routing.view_tenant" in named.json()["error"]["message"]
    refused = rank(login(staff_user("decisions-only", "view_decision")), {"prompt": "What is 2 + 2?", "lambda": 0})
    assert refused.status_code == 403 and "routing.view_routingstate" in refused.json()["error"]["message"]


def test_a_staff_user_linked_to_a_tenant_sees_that_tenant_where_staff_permissions_are_missing(site):
    from routing.models import TenantMembership

    user = staff_user("staff-and-member")
    TenantMembership.objects.create(user=user, tenant=site.tenant_a)
    page = login(user).get("/decisions/").content.decode()
    assert all(d in page for d in site.decisions_a) and not any(d in page for d in site.decisions_b)
