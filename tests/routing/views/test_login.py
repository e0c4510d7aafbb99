"""Password guessing at /login/ and /admin/login/: failed log-ins are limited per client address and
per user name; over a limit, 429 with Retry-After before any password is checked."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from routing.views import login

pytestmark = pytest.mark.django_db

PASSWORD = "the-right-password-1"


@pytest.fixture
def ops():
    return get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True)


def log_in(client, path, password, username="ops", **extra):
    return client.post(path, {"username": username, "password": password}, **extra)


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_an_address_with_too_many_failed_log_ins_waits_while_the_user_logs_in_elsewhere(ops, monkeypatch, path):
    monkeypatch.setattr(login, "FAILED_LOGIN_RATE", "3/h")
    monkeypatch.setattr(login, "FAILED_LOGIN_USER_RATE", "50/h")
    guesser = Client(REMOTE_ADDR="198.51.100.7")
    assert [log_in(guesser, path, f"guess-{i}").status_code for i in range(3)] == [200, 200, 200]
    checked = []
    monkeypatch.setattr("django.contrib.auth.backends.ModelBackend.authenticate", lambda *a, **k: checked.append(a))
    refused = log_in(guesser, path, PASSWORD)
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 3600
    assert "Too many failed log-ins from this address" in refused.content.decode()
    assert checked == [] and "_auth_user_id" not in guesser.session  # refused before the password was checked
    as_json = log_in(guesser, path, PASSWORD, HTTP_ACCEPT="application/json")
    assert as_json.status_code == 429 and as_json.json()["error"]["code"] == "throttled"
    assert as_json.json()["error"]["retry_after_seconds"] == int(as_json["Retry-After"])
    # a header the guesser writes does not make it another address (no trusted proxy is configured)
    assert log_in(guesser, path, PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.99").status_code == 429
    monkeypatch.undo()
    elsewhere = Client(REMOTE_ADDR="203.0.113.9")
    response = log_in(elsewhere, path, PASSWORD)
    assert response.status_code == 302 and int(elsewhere.session["_auth_user_id"]) == ops.id


def test_one_user_name_guessed_from_many_addresses_is_refused_everywhere(ops, monkeypatch):
    monkeypatch.setattr(login, "FAILED_LOGIN_RATE", "20/h")
    monkeypatch.setattr(login, "FAILED_LOGIN_USER_RATE", "4/h")
    for i in range(4):
        assert log_in(Client(REMOTE_ADDR=f"198.51.100.{i}"), "/login/", "guess").status_code == 200
    fresh = Client(REMOTE_ADDR="203.0.113.50")
    refused = log_in(fresh, "/login/", PASSWORD, username="OPS")  # user names count in any case
    assert refused.status_code == 429 and "for this user name" in refused.content.decode()
    get_user_model().objects.create_user("someone-else", password=PASSWORD)
    assert log_in(fresh, "/login/", PASSWORD, username="someone-else").status_code == 302


def test_successful_log_ins_do_not_count(ops, monkeypatch):
    monkeypatch.setattr(login, "FAILED_LOGIN_RATE", "2/h")
    for _ in range(4):
        client = Client(REMOTE_ADDR="198.51.100.7")
        assert log_in(client, "/login/", PASSWORD).status_code == 302
