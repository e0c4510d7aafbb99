"""An LLM's upstream key: encrypted at rest, or from a ROUTERHUB_LLM_KEY_* variable — nothing else."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from registry.models import LLM
from registry.secrets import SecretUnreadable, decrypt, encrypt
from registry.services import llm_register, llm_update
from routing.upstream.credentials import CredentialError, llm_api_key

pytestmark = pytest.mark.django_db


def test_a_stored_key_is_encrypted_and_read_back_only_for_the_call():
    llm = llm_register(name="keyed", api_base="https://models.example.com/v1", api_key="sk-live-123")
    stored = LLM.objects.get(id=llm.id).api_key_encrypted
    assert "sk-live-123" not in stored and decrypt(stored) == "sk-live-123"
    assert llm_api_key(LLM.objects.get(id=llm.id)) == "sk-live-123"
    llm_update(llm=llm, provider="example")  # other changes keep the key
    assert llm_api_key(LLM.objects.get(id=llm.id)) == "sk-live-123"
    llm_update(llm=llm, api_key="")
    assert LLM.objects.get(id=llm.id).api_key_encrypted == "" and llm_api_key(llm) is None


def test_keys_are_read_from_prefixed_variables_only(monkeypatch):
    monkeypatch.setenv("ROUTERHUB_LLM_KEY_EXAMPLE", "sk-env-456")
    llm = llm_register(name="env", api_base="https://models.example.com/v1", api_key_env="ROUTERHUB_LLM_KEY_EXAMPLE")
    assert llm_api_key(llm) == "sk-env-456"
    for name in ("DJANGO_SECRET_KEY", "DATABASE_URL", "ROUTERHUB_LLM_KEY_", "routerhub_llm_key_x"):
        with pytest.raises(ValidationError, match="ROUTERHUB_LLM_KEY_"):
            llm_update(llm=llm, api_key_env=name)
    with pytest.raises(IntegrityError), transaction.atomic():  # the database refuses it too
        LLM.objects.filter(id=llm.id).update(api_key_env="DJANGO_SECRET_KEY")
    llm.api_key_env = "DJANGO_SECRET_KEY"  # got in some other way: still never read
    monkeypatch.setenv("DJANGO_SECRET_KEY", "the-real-secret")
    with pytest.raises(CredentialError, match="refused"):
        llm_api_key(llm)


def test_an_unset_variable_or_an_unreadable_key_is_a_credential_error(monkeypatch, settings):
    monkeypatch.delenv("ROUTERHUB_LLM_KEY_GONE", raising=False)
    llm = llm_register(name="gone", api_base="https://models.example.com/v1", api_key_env="ROUTERHUB_LLM_KEY_GONE")
    with pytest.raises(CredentialError, match="ROUTERHUB_LLM_KEY_GONE"):
        llm_api_key(llm)
    token = encrypt("sk-old")
    settings.ROUTERHUB_ENCRYPTION_KEYS = ["x" * 43 + "="]
    with pytest.raises(SecretUnreadable):
        decrypt(token)


def test_key_rotation_keeps_old_keys_readable(settings):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ROUTERHUB_ENCRYPTION_KEYS = [old]
    token = encrypt("sk-rotated")
    settings.ROUTERHUB_ENCRYPTION_KEYS = [new, old]
    assert decrypt(token) == "sk-rotated"
    settings.ROUTERHUB_ENCRYPTION_KEYS = [new]
    with pytest.raises(SecretUnreadable):
        decrypt(token)


def test_metadata_can_no_longer_name_the_key_variable(monkeypatch):
    monkeypatch.setenv("DJANGO_SECRET_KEY", "the-real-secret")
    llm = llm_register(
        name="sneaky", api_base="https://models.example.com/v1", metadata={"api_key_env": "DJANGO_SECRET_KEY"}
    )
    assert llm_api_key(llm) is None


def test_staff_api_takes_the_key_and_never_returns_it(admin_client):
    created = admin_client.post(
        "/api/v1/llms",
        {"name": "staffed", "api_base": "https://models.example.com/v1", "api_key": "sk-staff-789"},
        content_type="application/json",
    )
    assert created.status_code in (201, 202), created.content  # 202: profiling queued, broker not reached
    assert "sk-staff-789" not in created.content.decode() and "api_key" not in created.json()
    assert created.json()["has_api_key"] is True
    assert llm_api_key(LLM.objects.get(name="staffed")) == "sk-staff-789"
    patched = admin_client.patch(
        "/api/v1/llms/staffed", {"api_key_env": "DJANGO_SECRET_KEY"}, content_type="application/json"
    )
    assert patched.status_code == 400 and "api_key_env" in patched.json()["error"]["fields"]
    ssrf = admin_client.patch(
        "/api/v1/llms/staffed", {"api_base": "http://169.254.169.254/latest"}, content_type="application/json"
    )
    assert ssrf.status_code == 400 and "api_base" in ssrf.json()["error"]["fields"]
    updated = admin_client.patch("/api/v1/llms/staffed", {"provider": "example"}, content_type="application/json")
    assert updated.status_code == 200 and updated.json()["has_api_key"] is True
    assert "sk-staff-789" not in updated.content.decode()


def test_admin_form_keeps_the_key_write_only(admin_client):
    form = {
        "name": "formed",
        "is_active": "on",
        "api_base": "https://models.example.com/v1",
        "metadata": "{}",
        "api_key": "sk-form-1",
    }
    assert admin_client.post("/admin/registry/llm/add/", form).status_code == 302
    llm = LLM.objects.get(name="formed")
    assert llm_api_key(llm) == "sk-form-1"
    page = admin_client.get(f"/admin/registry/llm/{llm.id}/change/").content.decode()
    assert "sk-form-1" not in page and llm.api_key_encrypted not in page and "stored (encrypted)" in page
    unchanged = {**form, "api_key": "", "provider": "p"}
    admin_client.post(f"/admin/registry/llm/{llm.id}/change/", unchanged)
    assert llm_api_key(LLM.objects.get(id=llm.id)) == "sk-form-1"  # an empty field keeps the key
    admin_client.post(f"/admin/registry/llm/{llm.id}/change/", {**unchanged, "remove_api_key": "on"})
    assert LLM.objects.get(id=llm.id).api_key_encrypted == ""


def test_a_malformed_encryption_key_or_a_zero_limit_fails_the_system_checks(settings):
    from django.core.checks import run_checks

    assert not {e.id for e in run_checks()} & {"routing.E025", "routing.E026"}
    settings.ROUTERHUB_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    settings.ROUTERHUB_GATEWAY_MAX_ATTEMPTS = 0
    assert {"routing.E025", "routing.E026"} <= {e.id for e in run_checks()}


def test_a_new_api_base_removes_the_stored_key_unless_the_same_change_brings_one():
    llm = llm_register(name="moved", api_base="https://models.example.com/v1", api_key="sk-moved-1")
    llm_update(llm=llm, api_base="https://collector.attacker.example/v1")
    assert LLM.objects.get(id=llm.id).api_key_encrypted == "" and llm_api_key(LLM.objects.get(id=llm.id)) is None
    llm_update(llm=llm, api_base="https://models.example.com/v2", api_key="sk-moved-2")
    assert llm_api_key(LLM.objects.get(id=llm.id)) == "sk-moved-2"  # a key typed with the change is kept
    llm_update(llm=llm, api_base="https://models.example.com/v2", api_model="m")  # the same base: kept
    assert llm_api_key(LLM.objects.get(id=llm.id)) == "sk-moved-2"
    # a model form sets the new base on the instance before the service saves it: still caught
    llm.api_base = "https://collector.attacker.example/v1"
    llm_update(llm=llm)
    assert LLM.objects.get(id=llm.id).api_key_encrypted == ""


def test_naming_another_key_variable_removes_the_stored_key(monkeypatch):
    monkeypatch.setenv("ROUTERHUB_LLM_KEY_OTHER", "sk-env-other")
    llm = llm_register(name="sourced", api_base="https://models.example.com/v1", api_key="sk-stored-1")
    llm_update(llm=llm, api_key_env="ROUTERHUB_LLM_KEY_OTHER")
    assert LLM.objects.get(id=llm.id).api_key_encrypted == ""
    assert llm_api_key(LLM.objects.get(id=llm.id)) == "sk-env-other"
    llm_update(llm=llm, api_key="sk-stored-2")
    llm_update(llm=llm, api_key_env="")  # no longer naming a variable moves nothing
    assert llm_api_key(LLM.objects.get(id=llm.id)) == "sk-stored-2"


def test_staff_who_point_an_llm_elsewhere_do_not_take_its_key_along(admin_client):
    llm = llm_register(name="patched", api_base="https://models.example.com/v1", api_key="sk-patch-1")
    moved = admin_client.patch(
        "/api/v1/llms/patched", {"api_base": "https://collector.attacker.example/v1"}, content_type="application/json"
    )
    assert moved.status_code == 200 and moved.json()["has_api_key"] is False
    assert llm_api_key(LLM.objects.get(id=llm.id)) is None
    rekeyed = admin_client.patch(
        "/api/v1/llms/patched",
        {"api_base": "https://models.example.com/v2", "api_key": "sk-patch-2"},
        content_type="application/json",
    )
    assert rekeyed.status_code == 200 and llm_api_key(LLM.objects.get(id=llm.id)) == "sk-patch-2"


def admin_form(llm: LLM, **changes) -> dict:
    return {
        "name": llm.name,
        "is_active": "on",
        "api_base": llm.api_base,
        "api_model": llm.api_model,
        "api_key_env": llm.api_key_env,
        "metadata": "{}",
        "api_key": "",
        **changes,
    }


def test_the_admin_removes_the_key_when_the_base_url_changes_and_says_so(admin_client):
    llm = llm_register(name="admin-moved", api_base="https://models.example.com/v1", api_key="sk-admin-1")
    response = admin_client.post(
        f"/admin/registry/llm/{llm.id}/change/",
        admin_form(llm, api_base="https://collector.attacker.example/v1"),
        follow=True,
    )
    assert response.status_code == 200
    stored = LLM.objects.get(id=llm.id)
    assert stored.api_base == "https://collector.attacker.example/v1" and stored.api_key_encrypted == ""
    assert "The stored API key of admin-moved was removed" in response.content.decode()
    admin_client.post(
        f"/admin/registry/llm/{llm.id}/change/",
        admin_form(stored, api_base="https://models.example.com/v2", api_key="sk-admin-2"),
    )
    assert llm_api_key(LLM.objects.get(id=llm.id)) == "sk-admin-2"  # typed with the change: kept
