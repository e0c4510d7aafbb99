"""The admin: tenants with their keys (shown once), revocation, read-only decisions and budgets."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages.storage.cookie import CookieStorage
from django.http import HttpRequest
from django.test import Client

from routing.models import ApiKey, BudgetPeriod, Decision, LLMProfile, Tenant
from tests.fixtures.api import ApiClient

pytestmark = pytest.mark.django_db

KEY = re.compile(r"rh_[A-Za-z0-9_-]{30,}")


@pytest.fixture
def admin_client_():
    user = get_user_model().objects.create_superuser("root", password="pw-123456")
    client = Client()
    client.force_login(user)
    return client


def shown_keys(response) -> list[str]:
    return KEY.findall(response.content.decode())


def cookie_texts(*jars) -> list[str]:
    """Every cookie's value as sent, and — for Django's message cookie — the messages it carries."""
    texts = []
    for jar in jars:
        for morsel in jar.values():
            texts.append(morsel.OutputString())
            if morsel.key == CookieStorage.cookie_name and morsel.value:
                stored = CookieStorage(HttpRequest())._decode(morsel.value) or []
                texts.extend(str(message) for message in stored)
    return texts


def assert_key_only_in_the_page(client, response) -> str:
    """The secret is in the body of the answer to the request that issued it and nowhere else: no
    header, no cookie set or kept (Django's message cookie would carry it to the next page)."""
    found = {match for text in cookie_texts(response.cookies, client.cookies) for match in KEY.findall(text)}
    found |= {match for name, value in response.items() for match in KEY.findall(f"{name}: {value}")}
    assert found == set()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    (key,) = shown_keys(response)
    follow_up = client.get("/admin/")  # nothing carried over to the next page either
    assert key not in follow_up.content.decode()
    assert not any(key in text for text in cookie_texts(follow_up.cookies, client.cookies))
    return key


def test_adding_a_tenant_shows_its_first_key_once(admin_client_, fitted):
    response = admin_client_.post(
        "/admin/routing/tenant/add/",
        {
            "name": "newco",
            "budget_usd": "25",
            "budget_period": "month",
            "when_budget_spent": "reject",
            "shadow_share": "0",
            "is_active": "on",
            "exploration_share": "0",
            "api_keys-TOTAL_FORMS": "0",
            "api_keys-INITIAL_FORMS": "0",
            "presets-TOTAL_FORMS": "0",
            "presets-INITIAL_FORMS": "0",
        },
    )
    shown = [assert_key_only_in_the_page(admin_client_, response)]
    assert ApiClient(shown[0]).route().status_code == 200
    page = admin_client_.get(f"/admin/routing/tenant/{Tenant.objects.get(name='newco').id}/change/")
    assert shown[0] not in page.content.decode() and shown[0][:11] in page.content.decode()


def test_issue_key_action_and_revoke_action(admin_client_, make_tenant, fitted):
    tenant, old_key = make_tenant()
    response = admin_client_.post(
        "/admin/routing/tenant/",
        {"action": "issue_api_key", "_selected_action": [tenant.id]},
    )
    new_key = assert_key_only_in_the_page(admin_client_, response)
    assert ApiClient(new_key).route().status_code == 200
    old = ApiKey.objects.get(prefix=old_key[:11])
    admin_client_.post("/admin/routing/apikey/", {"action": "revoke", "_selected_action": [old.id]}, follow=True)
    assert ApiClient(old_key).route().status_code == 401
    assert ApiClient(new_key).route().status_code == 200


def test_adding_a_key_in_the_key_admin_shows_it_once(admin_client_, make_tenant, fitted):
    tenant, _ = make_tenant()
    response = admin_client_.post("/admin/routing/apikey/add/", {"tenant": tenant.id, "name": "ci"})
    key = assert_key_only_in_the_page(admin_client_, response)
    assert ApiKey.objects.get(name="ci").key_hash != key
    assert ApiClient(key).route().status_code == 200


def test_changing_a_budget_in_the_admin_updates_the_open_period(admin_client_, make_tenant, fitted):
    tenant, key = make_tenant(budget_usd="10")
    ApiClient(key).route()
    admin_client_.post(
        f"/admin/routing/tenant/{tenant.id}/change/",
        {
            "name": tenant.name,
            "budget_usd": "3",
            "budget_period": "month",
            "when_budget_spent": "reject",
            "shadow_share": "0",
            "is_active": "on",
            "exploration_share": "0",
            "api_keys-TOTAL_FORMS": "1",
            "api_keys-INITIAL_FORMS": "1",
            "api_keys-0-id": tenant.api_keys.get().id,
            "api_keys-0-tenant": tenant.id,
            "api_keys-0-name": "",
            "presets-TOTAL_FORMS": "0",
            "presets-INITIAL_FORMS": "0",
        },
    )
    assert BudgetPeriod.objects.get(tenant=tenant).limit_usd == 3


def test_decisions_and_budget_periods_are_read_only_in_the_admin(admin_client_, api, fitted):
    api.route()
    decision = Decision.objects.get()
    assert admin_client_.get("/admin/routing/decision/").status_code == 200
    assert admin_client_.get("/admin/routing/decision/", {"lambda_reason": "budget_pacing"}).status_code == 200
    page = admin_client_.get(f"/admin/routing/decision/{decision.id}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client_.get("/admin/routing/decision/add/").status_code == 403
    assert admin_client_.get("/admin/routing/budgetperiod/").status_code == 200
    assert admin_client_.get("/admin/routing/tenant/").status_code == 200


def test_presets_are_edited_on_their_tenant_and_listed(admin_client_, make_tenant, fitted):
    from routing.models import Preset

    tenant, _ = make_tenant(budget_usd="10")
    response = admin_client_.post(
        f"/admin/routing/tenant/{tenant.id}/change/",
        {
            "name": tenant.name,
            "budget_usd": "10",
            "budget_period": "month",
            "when_budget_spent": "reject",
            "shadow_share": "0",
            "is_active": "on",
            "exploration_share": "0",
            "log_gateway_text": "on",
            "api_keys-TOTAL_FORMS": "0",
            "api_keys-INITIAL_FORMS": "0",
            "presets-TOTAL_FORMS": "1",
            "presets-INITIAL_FORMS": "0",
            "presets-0-name": "cheap",
            "presets-0-lambda_value": "1000",
            "presets-0-tenant": tenant.id,
        },
    )
    assert response.status_code == 302, response.content[:3000]
    preset = Preset.objects.get(tenant=tenant)
    assert (preset.name, preset.lambda_value, preset.model_name) == ("cheap", 1000, "routerhub-auto:cheap")
    assert Tenant.objects.get(id=tenant.id).log_gateway_text is True
    assert "routerhub-auto:cheap" in admin_client_.get("/admin/routing/preset/").content.decode()
    bad = admin_client_.post(
        f"/admin/routing/preset/{preset.id}/change/", {"tenant": tenant.id, "name": "not ok!", "quality_target": "2"}
    )
    assert bad.status_code == 200 and b"errornote" in bad.content


def test_a_decisions_page_lists_every_feedback_it_received(admin_client_, api, fitted):
    decision_id = api.route().json()["decision_id"]
    for score in (0.25, 0.75):
        api.post(f"/api/v1/route/{decision_id}/feedback", {"quality_score": score})
    page = admin_client_.get(f"/admin/routing/decision/{decision_id}/change/").content.decode()
    assert "Decision feedback" in page and "0.25" in page and "0.75" in page


def test_the_admin_header_opens_the_dashboard_and_key_columns_are_short(admin_client_, site):
    index = admin_client_.get("/admin/").content.decode()
    assert '<a href="/">View site</a>' in index and "routerhub admin" in index
    decisions = admin_client_.get("/admin/routing/decision/").content.decode()
    decision = Decision.objects.get(id=site.decisions_a[0])
    assert f'<td class="field-predicted">{decision.predicted_quality:.3f}</td>' in decisions
    assert not re.search(r"\d\.0*[1-9]\d{6,}", decisions)  # no 0.34701859951019287 in a list cell
    llms = admin_client_.get("/admin/registry/llm/").content.decode()
    for header in ("accuracy", "outcomes", "$ / 1M in", "$ / 1M out"):
        assert f">{header}</a>".lower() in llms.lower()  # the admin capitalises headers
    assert 'id="nav-sidebar"' not in llms  # the table gets the width instead


def test_linking_a_user_to_a_tenant_in_the_admin_opens_that_tenants_dashboard(admin_client_, make_tenant):
    from routing.models import TenantMembership

    tenant, _ = make_tenant(name="linked")
    user = get_user_model().objects.create_user("member", password="pw-123456")
    viewer = Client()
    viewer.force_login(user)
    assert viewer.get("/").status_code == 403
    response = admin_client_.post("/admin/routing/tenantmembership/add/", {"user": user.id, "tenant": tenant.id})
    assert response.status_code == 302 and TenantMembership.objects.get(user=user).tenant == tenant
    assert "Tenant <strong>linked</strong>" in viewer.get("/").content.decode()


def test_the_profile_admin_shows_each_llms_smoothing(admin_client_, fitted):
    profile = LLMProfile.objects.filter(state=fitted).select_related("llm").order_by("llm__name").first()

    listing = admin_client_.get("/admin/routing/llmprofile/").content.decode()
    page = admin_client_.get(f"/admin/routing/llmprofile/{profile.id}/change/").content.decode()

    assert "as the training LLMs: tuned prior strength 5 on 4 clusters" in listing
    assert "as the training LLMs: tuned prior strength 5 on 4 clusters" in page
    assert "&quot;departs&quot;: false" in page  # the stored choice itself
