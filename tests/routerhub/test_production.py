"""Production settings (DJANGO_DEBUG=0) and the docker-compose deployment: no fallback secrets (in
development, a key of the checkout's own), HTTPS settings from the environment, `check --deploy` clean
with the documented environment, no passwords in the files, Redis with a password and an append-only
file, a non-root image."""

from __future__ import annotations

import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

PROJECT = Path(__file__).resolve().parents[2]
VARIABLE = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:[?-])(?P<arg>[^}]*))?\}")


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run manage.py in a fresh interpreter with only ``env`` (plus PATH/HOME) as its environment."""
    base = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env={**base, "ROUTERHUB_EMBEDDER": "hashing", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def env_example() -> dict[str, str]:
    values = {}
    for line in (PROJECT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def substitute(text: str, env: dict[str, str]) -> str:
    """docker compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution."""

    def replace(match):
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name, "")
        if op == ":?" and not value:
            raise KeyError(f"{name}: {arg}")
        return value or (arg if op == ":-" else "")

    return VARIABLE.sub(replace, text)


def generated(key: str) -> str:
    """A value for an empty variable of .env.example, made as its comment says."""
    if "PASSWORD" in key:
        return secrets.token_hex(24)
    if key == "ROUTERHUB_ENCRYPTION_KEYS":
        return Fernet.generate_key().decode()
    return secrets.token_urlsafe(48)


def production_environment(**changes: str | None) -> dict[str, str]:
    env = {
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "DJANGO_ALLOWED_HOSTS": "a.example",
        "ROUTERHUB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    env.update(changes)
    return {key: value for key, value in env.items() if value is not None}


def compose() -> dict:
    return yaml.safe_load((PROJECT / "docker-compose.yml").read_text())


def documented_environment() -> dict[str, str]:
    """What the app containers get from docker-compose.yml with .env.example, its secrets generated
    the way its comments say."""
    dotenv = {key: value or generated(key) for key, value in env_example().items()}
    dotenv["ROUTERHUB_ADMIN_PASSWORD"] = ""  # optional
    environment = compose()["x-app"]["environment"]
    return {key: substitute(str(value), dotenv) for key, value in environment.items()}


# -- start-up ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "ROUTERHUB_ENCRYPTION_KEYS"])
def test_production_refuses_to_start_without_its_secret_key_hosts_or_encryption_keys(missing):
    """Stored LLM API keys are never encrypted with a key derived from the secret key in production."""
    for value in (None, ""):
        result = manage("check", env=production_environment(**{missing: value}))
        assert result.returncode != 0
        assert f"{missing} must be set when DJANGO_DEBUG=0 (production)" in result.stderr, result.stderr[-2000:]
    assert manage("check", env=production_environment()).returncode == 0


def test_development_defaults_apply_without_django_debug():
    result = manage(
        "shell",
        "-c",
        "from django.conf import settings as s; print(s.DEBUG, s.ALLOWED_HOSTS, s.SESSION_COOKIE_SECURE)",
        env={},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False ['localhost', '127.0.0.1', '[::1]'] False"


def test_development_signs_with_the_checkouts_own_key_never_one_from_the_repository():
    """`ROUTERHUB_HOST=0.0.0.0 make run` serves with development settings: their key is made for this
    checkout on first use and kept private, so no copy of the repository holds it."""
    result = manage(
        "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)", env={"ROUTERHUB_HOST": "0.0.0.0"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    key = result.stdout.strip().splitlines()[-1]
    kept = PROJECT / ".run" / "secret-key"
    assert kept.read_text().strip() == key and len(key) >= 64
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    tracked = subprocess.run(["git", "grep", "-F", "-l", key[:24]], cwd=PROJECT, capture_output=True, text=True)
    assert tracked.returncode == 1 and tracked.stdout == ""  # in no file of the repository
    assert "development-only-key" not in (PROJECT / "routerhub" / "settings.py").read_text()


def test_check_deploy_passes_with_the_environment_docker_compose_documents():
    env = documented_environment()
    assert env["DJANGO_DEBUG"] == "0" and env["DJANGO_SECURE_SSL_REDIRECT"] == "1"
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "System check identified no issues" in result.stdout


def test_https_settings_come_from_the_environment():
    env = {
        **documented_environment(),
        "DJANGO_SECURE_HSTS_SECONDS": "600",
        "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    }
    code = (
        "from django.conf import settings as s; print(s.SECURE_HSTS_SECONDS, s.SECURE_PROXY_SSL_HEADER, "
        "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT)"
    )
    result = manage("shell", "-c", code, env=env)
    assert result.stdout.strip().splitlines()[-1] == "600 ('HTTP_X_FORWARDED_PROTO', 'https') True True True", (
        result.stderr[-2000:]
    )


# -- the deployment files ---------------------------------------------------------------------------
def test_compose_has_no_hard_coded_passwords_or_secrets():
    text = (PROJECT / "docker-compose.yml").read_text()
    for service in compose()["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if re.search("PASSWORD|SECRET|AUTH", key):
                assert VARIABLE.fullmatch(str(value)), (key, value)
    assert "POSTGRES_PASSWORD}@db" not in text and "${POSTGRES_PASSWORD:?" in text
    for url_key in ("DATABASE_URL", "CELERY_BROKER_URL"):
        url = compose()["x-app"]["environment"][url_key]
        assert "${" in url.split("@")[0], url  # the password part is a variable
    referenced = {match["name"] for match in VARIABLE.finditer(text)}
    undocumented = referenced - set(env_example()) - {"ROUTERHUB_ADMIN_PASSWORD"}
    assert undocumented == set()


def test_the_web_port_is_published_on_loopback_only_for_a_proxy_on_the_host():
    published = {name: service.get("ports", []) for name, service in compose()["services"].items()}
    assert published["web"] == ["127.0.0.1:8000:8000"]
    assert all(port.startswith("127.0.0.1:") for ports in published.values() for port in ports), published
    # the proxy's connections come from the network's gateway: the one address whose X-Forwarded-For counts
    gateway = compose()["networks"]["default"]["ipam"]["config"][0]["gateway"]
    assert env_example()["ROUTERHUB_TRUSTED_PROXIES"] == gateway
    assert documented_environment()["ROUTERHUB_TRUSTED_PROXIES"] == gateway
    web_sh = (PROJECT / "scripts" / "web.sh").read_text()
    assert "--no-proxy-headers" in web_sh  # uvicorn itself believes no X-Forwarded-For


def test_redis_needs_a_password_and_keeps_an_append_only_file():
    redis = compose()["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--requirepass ${REDIS_PASSWORD:?" in command and "--appendonly yes" in command
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "redis://:${REDIS_PASSWORD" in compose()["x-app"]["environment"]["CELERY_BROKER_URL"]


def test_the_image_runs_as_a_non_root_user_with_production_settings():
    lines = [line.strip() for line in (PROJECT / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert lines.index(next(line for line in lines if line.startswith("USER "))) < lines.index(
        next(line for line in lines if line.startswith("CMD "))
    )
    assert any("DJANGO_DEBUG=0" in line for line in lines if line.startswith("ENV "))
    assert ".env" in (PROJECT / ".dockerignore").read_text().split()
