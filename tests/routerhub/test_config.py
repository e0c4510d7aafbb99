"""The configuration module: its table is docs/configuration.md, and a bad value stops the process at
start with a message naming the variable."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from routerhub import config

PROJECT = Path(__file__).resolve().parents[2]


def test_docs_configuration_is_the_modules_table():
    assert (PROJECT / "docs" / "configuration.md").read_text() == config.markdown(), (
        "regenerate it: python -m routerhub.config --markdown > docs/configuration.md"
    )


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("ROUTERHUB_MAX_MESSAGES", None, 1000),
        ("ROUTERHUB_MAX_MESSAGES", "", 1000),
        ("ROUTERHUB_MAX_MESSAGES", " 5 ", 5),
        ("ROUTERHUB_UPSTREAM_DEADLINE_SECONDS", "30", 30.0),
        ("ROUTERHUB_GATEWAY_DURABLE_RESERVATIONS", "yes", True),
        ("ROUTERHUB_REQUEST_LOG", "", False),
        ("ROUTERHUB_TRUSTED_PROXIES", " 10.0.0.5, ,172.18.0.0/16", ["10.0.0.5", "172.18.0.0/16"]),
        ("ROUTERHUB_THROTTLE_API_KEY", "", ""),
        ("ROUTERHUB_PROFILING_MAX_COST_USD", None, None),
    ],
)
def test_values_are_read_with_their_type_and_default(name, raw, expected):
    assert config.get(name, {} if raw is None else {name: raw}) == expected


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("ROUTERHUB_MAX_MESSAGES", "0", "must be at least 1"),
        ("ROUTERHUB_MAX_MESSAGES", "many", "must be a whole number"),
        ("ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS", "nan", "must be a number"),
        ("ROUTERHUB_GATEWAY_DURABLE_RESERVATIONS", "maybe", "must be 1 or 0"),
        ("ROUTERHUB_SHARED_EMBEDDING_CACHE", "sometimes", "must be one of: auto, on, off"),
        ("ROUTERHUB_PORT", "70000", "must be from 1 to 65535"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name, raw, says):
    with pytest.raises(ImproperlyConfigured, match=f"^{name}=") as refused:
        config.get(name, {name: raw})
    assert says in str(refused.value)


def test_a_process_with_a_value_out_of_bounds_stops_at_start_naming_it():
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=PROJECT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(PROJECT), "ROUTERHUB_GATEWAY_THREADS": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "ROUTERHUB_GATEWAY_THREADS='0' must be at least 1" in result.stderr


def test_every_setting_the_module_declares_is_a_django_setting(settings):
    for name in config.django_settings({}):
        assert hasattr(settings, name), name
