"""setup_demo: its secrets land in files only their owner can read, and a rerun replaces the demo key."""

from __future__ import annotations

import io
import os
import re
import stat

import pytest
from django.core.management import call_command

from registry.private_files import write_private
from routing.models import ApiKey
from tests.fixtures.api import ApiClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def wide_umask():
    """The most permissive umask: files end up 0600 only if they are created that way."""
    previous = os.umask(0)
    yield
    os.umask(previous)


@pytest.fixture
def project_dir(tmp_path, settings):
    settings.BASE_DIR = tmp_path
    settings.ROUTERHUB_ADMIN_PASSWORD = ""
    return tmp_path


def setup_demo(output=None) -> str:
    out = io.StringIO()
    args = ["--output", str(output)] if output else []
    call_command("setup_demo", "--base-url", "http://127.0.0.1:8000", *args, stdout=out)
    return out.getvalue()


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_demo_file_and_the_admin_password_are_private(fitted, project_dir, wide_umask):
    output = project_dir / ".run" / "demo.txt"
    printed = setup_demo(output)
    assert mode(output) == 0o600 and output.read_text() == printed
    password_file = project_dir / ".run" / "admin-password"
    assert mode(password_file) == 0o600
    assert f"password {password_file.read_text().strip()!r}" in printed
    assert "Bearer rh_" in output.read_text()


def test_write_private_narrows_an_existing_file_before_writing(tmp_path, wide_umask):
    path = tmp_path / "secret"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new secret")
    assert mode(path) == 0o600 and path.read_text() == "new secret"
    fresh = write_private(tmp_path / "sub" / "fresh", "x")
    assert mode(fresh) == 0o600


def test_a_rerun_revokes_the_previous_demo_key(fitted, project_dir):
    first = re.search(r"Bearer (rh_\S+)'", setup_demo())[1]
    assert ApiClient(first).route().status_code == 200
    second_run = setup_demo()
    second = re.search(r"Bearer (rh_\S+)'", second_run)[1]
    assert "1 earlier demo key(s) revoked" in second_run
    assert ApiClient(first).route().status_code == 401
    assert ApiClient(second).route().status_code == 200
    keys = ApiKey.objects.filter(tenant__name="demo", name="setup_demo")
    assert keys.count() == 2 and keys.filter(revoked_at__isnull=True).count() == 1
    # the same login every run
    assert (
        re.search(r"password '([^']+)'", second_run)[1] == (project_dir / ".run" / "admin-password").read_text().strip()
    )


def test_the_demo_tenant_is_shadowed_at_a_small_share_by_the_demo_judge_once(fitted, project_dir):
    from decimal import Decimal

    from registry.models import LLM
    from routing.models import ShadowBudget, Tenant

    out = io.StringIO()
    upstream = [
        "--upstream-url",
        "http://127.0.0.1:8001/v1",
        "--dataset",
        "mmlu-slice",
        "--strategies",
        "uniroute_kmeans",
    ]
    call_command("setup_demo", "--base-url", "http://127.0.0.1:8000", *upstream, stdout=out)
    demo = Tenant.objects.get(name="demo")
    cheapest = LLM.objects.exclude(api_base="").order_by("usd_per_mtok_out", "name").first()
    assert (demo.shadow_share, demo.shadow_judge_llm) == (0.2, cheapest)
    assert list(ShadowBudget.objects.values_list("tenant", "limit_usd")) == [(None, Decimal(1))]
    assert f"judged by {cheapest.name} (the demo upstream's demo judge, a stand-in" in out.getvalue()
    assert "http://127.0.0.1:8000/shadow/" in out.getvalue()
    Tenant.objects.filter(id=demo.id).update(shadow_share=0.05)  # staff's choice stands on the next run
    call_command("setup_demo", "--base-url", "http://127.0.0.1:8000", *upstream, stdout=io.StringIO())
    assert Tenant.objects.get(id=demo.id).shadow_share == 0.05 and ShadowBudget.objects.count() == 1
