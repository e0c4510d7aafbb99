"""Who may call what, and how often: no HTTP Basic, rate limits per API key and per address for
failed authentication (429 with Retry-After), and a health check that tells outsiders only the status."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth import get_user_model

from routing.models import Decision
from tests.fixtures.api import ROUTE, ApiClient

pytestmark = pytest.mark.django_db


def basic(username: str, password: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def test_http_basic_is_not_accepted_even_with_the_right_password(fitted, monkeypatch):
    get_user_model().objects.create_superuser("bot", password="bot-pass-123")
    hashed = []
    monkeypatch.setattr("django.contrib.auth.hashers.PBKDF2PasswordHasher.verify", lambda *a: hashed.append(a) or True)
    response = ApiClient().post("/api/v1/llms", {"name": "via-basic"}, **basic("bot", "bot-pass-123"))
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert hashed == []  # no password was hashed for it


def test_requests_over_the_per_key_rate_get_429_with_retry_after(make_tenant, fitted, settings):
    settings.ROUTERHUB_THROTTLE_API_KEY = "3/min"
    (_, key), (_, other_key) = make_tenant(name="busy"), make_tenant(name="calm")
    busy = ApiClient(key)
    assert [busy.route().status_code for _ in range(3)] == [200, 200, 200]
    refused = busy.route()
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "throttled"
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert Decision.objects.count() == 3
    assert ApiClient(other_key).route().status_code == 200  # another key has its own count


def test_too_many_failed_keys_from_one_address_get_429_even_for_a_valid_key(make_tenant, fitted, settings):
    settings.ROUTERHUB_THROTTLE_FAILED_AUTH = "5/min"
    _, key = make_tenant()
    guesser = ApiClient("rh_guess")
    assert [guesser.route().status_code for _ in range(5)] == [401] * 5
    refused = guesser.route()
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert "failed authentications" in refused.json()["error"]["message"]
    assert ApiClient(key).route().status_code == 429  # same address: a valid key is not told apart
    elsewhere = ApiClient(key).post(ROUTE, {"prompt": "hi"}, REMOTE_ADDR="192.0.2.7")
    assert elsewhere.status_code == 200


def test_x_forwarded_for_counts_only_behind_the_configured_proxies(make_tenant, fitted, settings):
    settings.ROUTERHUB_THROTTLE_FAILED_AUTH = "2/min"
    guesser = ApiClient("rh_guess")
    for i in range(3):  # a forged header does not make a new address when no proxy is configured
        guesser.post(ROUTE, {"prompt": "hi"}, HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
    assert guesser.post(ROUTE, {"prompt": "hi"}, HTTP_X_FORWARDED_FOR="198.51.100.99").status_code == 429


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(make_tenant, fitted, settings):
    settings.ROUTERHUB_THROTTLE_FAILED_AUTH = "2/min"
    settings.ROUTERHUB_TRUSTED_PROXIES = ["10.0.0.5"]
    _, key = make_tenant()
    # A client that reaches the web process directly: whatever it writes in the header, the lockout
    # is its connection's address.
    direct = ApiClient("rh_guess")
    for i in range(2):
        assert (
            direct.post(
                ROUTE, {"prompt": "hi"}, REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR=f"10.9.9.{i}"
            ).status_code
            == 401
        )
    forged = {"REMOTE_ADDR": "203.0.113.7", "HTTP_X_FORWARDED_FOR": "10.9.9.99"}
    assert ApiClient(key).post(ROUTE, {"prompt": "hi"}, **forged).status_code == 429
    assert ApiClient(key).post(ROUTE, {"prompt": "hi"}, REMOTE_ADDR="203.0.113.8").status_code == 200
    # Through the proxy, clients are told apart by the address the proxy appended (the last one);
    # what a client wrote to its left changes nothing.
    for i in range(2):
        via = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": f"10.9.9.{i}, 192.0.2.10"}
        assert direct.post(ROUTE, {"prompt": "hi"}, **via).status_code == 401
    guesser = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "10.9.9.77, 192.0.2.10"}
    assert ApiClient(key).post(ROUTE, {"prompt": "hi"}, **guesser).status_code == 429
    neighbour = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "192.0.2.20"}
    assert ApiClient(key).post(ROUTE, {"prompt": "hi"}, **neighbour).status_code == 200


@pytest.mark.parametrize(
    "remote, forwarded, client",
    [
        ("203.0.113.7", "192.0.2.1", "203.0.113.7"),  # not a proxy of ours: the header is ignored
        ("10.0.0.5", "192.0.2.1", "192.0.2.1"),
        ("10.0.0.5", "192.0.2.1, 10.0.0.6", "192.0.2.1"),  # two proxies of ours in a row
        ("10.0.0.5", "2001:db8::1", "2001:db8::1"),
        ("::ffff:10.0.0.5", "192.0.2.1", "192.0.2.1"),  # a dual-stack socket's IPv4-mapped peer
        ("10.0.0.5", "192.0.2.1, not-an-address", "10.0.0.5"),  # our proxy wrote no address: itself
        ("10.0.0.5", "", "10.0.0.5"),
        ("10.0.0.5", "10.0.0.7", "10.0.0.7"),  # only proxies: the first of them
    ],
)
def test_the_client_address_is_the_nearest_hop_that_is_no_trusted_proxy(settings, remote, forwarded, client):
    from django.test import RequestFactory

    from routing.throttling import client_address

    settings.ROUTERHUB_TRUSTED_PROXIES = ["10.0.0.0/29"]
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == client


def test_a_trusted_proxy_that_is_no_address_fails_the_system_checks(settings):
    from django.core.checks import run_checks

    assert "routing.E030" not in {e.id for e in run_checks()}
    settings.ROUTERHUB_TRUSTED_PROXIES = ["10.0.0.5", "proxy.example.com"]
    errors = [e for e in run_checks() if e.id == "routing.E030"]
    assert len(errors) == 1 and "proxy.example.com" in errors[0].msg


def test_anonymous_health_is_the_status_only_and_staff_see_the_details(fitted, client, admin_client):
    anonymous = client.get("/api/v1/health")
    assert anonymous.status_code == 200 and anonymous.json() == {"status": anonymous.json()["status"]}
    assert anonymous.json()["status"] in ("ok", "degraded")
    staff = admin_client.get("/api/v1/health").json()
    assert staff["database"] == {"ok": True} and staff["routing_state"]["ok"] is True
    assert "ok" in staff["broker"]


def test_a_tenant_key_gets_the_status_only_too(api, fitted):
    assert set(api.get("/api/v1/health").json()) == {"status"}


def test_staff_writes_through_the_session_need_the_csrf_token(fitted, monkeypatch):
    from django.test import Client

    monkeypatch.setattr("routing.services.jobs._send", lambda job_id: False)
    user = get_user_model().objects.create_superuser("ops", password="ops-password-123")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    refused = client.post("/api/v1/llms", {"name": "no-csrf"}, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
    client.get("/admin/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post(
        "/api/v1/llms", {"name": "with-csrf"}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert accepted.status_code in (201, 202), accepted.content
