"""Trust for learning is granted by staff holding its permission only; the evidence audit is read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from registry.embedders import get_embedder
from registry.models import LLM, Prompt
from registry.services import prompt_record
from routing.models import EvidenceApplication, RoutingState, Tenant, TenantMembership
from routing.services.evidence import evidence_record
from routing.services.feedback import PROMPT_SET
from routing.tasks import apply_evidence

pytestmark = pytest.mark.django_db


def staff_client(*codenames: str, username: str = "ops") -> Client:
    user = get_user_model().objects.create_user(username, password="long-enough-password", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def tenant_form(tenant: Tenant, **fields) -> dict:
    return {
        "name": tenant.name,
        "budget_usd": "10",
        "budget_period": "month",
        "when_budget_spent": "reject",
        "exploration_share": "0",
        "shadow_share": "0",
        "is_active": "on",
        "api_keys-TOTAL_FORMS": "0",
        "api_keys-INITIAL_FORMS": "0",
        "presets-TOTAL_FORMS": "0",
        "presets-INITIAL_FORMS": "0",
        **fields,
    }


def test_only_staff_with_the_trust_permission_can_mark_a_tenant_trusted_for_learning(make_tenant):
    tenant, _ = make_tenant(budget_usd="10")
    page = f"/admin/routing/tenant/{tenant.id}/change/"

    editor = staff_client("view_tenant", "change_tenant")
    assert 'name="trusted_for_learning"' not in editor.get(page).content.decode()  # shown, not editable
    response = editor.post(page, tenant_form(tenant, trusted_for_learning="on", budget_usd="11"))
    assert response.status_code == 302
    tenant.refresh_from_db()
    assert (tenant.budget_usd, tenant.trusted_for_learning) == (11, False)  # the rest saved, trust not

    truster = staff_client("view_tenant", "change_tenant", "trust_tenant_for_learning", username="truster")
    assert 'name="trusted_for_learning"' in truster.get(page).content.decode()
    assert truster.post(page, tenant_form(tenant, trusted_for_learning="on")).status_code == 302
    assert Tenant.objects.get(id=tenant.id).trusted_for_learning is True

    # A tenant's own user sees its dashboard pages, never the admin.
    member = get_user_model().objects.create_user("member", password="long-enough-password")
    TenantMembership.objects.create(user=member, tenant=tenant)
    client = Client()
    client.force_login(member)
    assert client.get(page)["Location"].startswith("/admin/login/")


def test_the_audit_lists_what_moved_which_llm_from_whom_and_cannot_be_edited(routing_data, make_tenant):
    tenant, _ = make_tenant(name="trusted-co", trusted_for_learning=True)
    llm = LLM.objects.get(name="big-generalist")
    texts = Prompt.objects.filter(prompt_set=routing_data.prompt_set, category="math", split=Prompt.Split.TEST)
    for text in texts.values_list("text", flat=True)[:6]:
        prompt = prompt_record(prompt_set_name=PROMPT_SET, text=text, embed=get_embedder().embed_one)
        evidence_record(llm=llm, prompt=prompt, score=0.0, source="feedback", tenant=tenant)
    apply_evidence()
    application = EvidenceApplication.objects.get()
    state = RoutingState.objects.get(is_active=True)

    viewer = staff_client("view_evidenceapplication")
    listing = viewer.get("/admin/routing/evidenceapplication/").content.decode()
    assert "big-generalist" in listing and f"v{state.version} uniroute_kmeans" in listing
    assert f"{application.error_before:.3f} → {application.error_after:.3f}" in listing
    assert "feedback (trusted-co): 6 events, weight 6" in listing
    detail = viewer.get(f"/admin/routing/evidenceapplication/{application.id}/change/").content.decode()
    assert f"score 0.0 from feedback, trusted-co — estimated error {application.moved[0]['before']}" in detail
    assert 'name="_save"' not in detail
    assert viewer.get("/admin/routing/evidenceapplication/add/").status_code == 403
