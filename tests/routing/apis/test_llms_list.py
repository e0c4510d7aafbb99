"""GET /api/v1/llms: what tenants and staff see of the routable LLMs."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from registry.models import LLM
from routing.caches import reset_all
from tests.fixtures.api import ApiClient

ENDPOINT = "http://10.0.0.7:8000/v1"


def test_tenants_see_names_and_prices_but_not_endpoints_which_staff_see(api, fitted):
    LLM.objects.update(api_base=ENDPOINT, updated_at=timezone.now())
    reset_all()
    listed = api.get("/api/v1/llms")
    assert listed.status_code == 200
    llms = {llm["name"]: llm for llm in listed.json()["llms"]}
    assert set(llms) == set(LLM.objects.values_list("name", flat=True))
    flash = LLM.objects.get(name="gemini-1.5-flash-002")
    shown = llms[flash.name]
    assert (shown["usd_per_mtok_in"], shown["usd_per_mtok_out"]) == (flash.usd_per_mtok_in, flash.usd_per_mtok_out)
    assert all("api_base" not in llm for llm in llms.values()) and b"10.0.0.7" not in listed.content

    user = get_user_model().objects.create_user("viewer", password="viewer-pass-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_llm"))
    staff = ApiClient()
    staff.client.force_login(user)
    assert {llm["api_base"] for llm in staff.get("/api/v1/llms").json()["llms"]} == {ENDPOINT}
