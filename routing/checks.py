"""Start-up checks of routing's settings: a typo fails loudly (ids routing.E022, E023, E025, E026, E030)."""

import ipaddress

from django.conf import settings
from django.core.checks import Error, register


@register()
def route_api_limits_are_positive(app_configs, **kwargs):
    names = (
        "ROUTERHUB_MAX_PROMPT_CHARS",
        "ROUTERHUB_EXPECTED_OUTPUT_TOKENS",
        "ROUTERHUB_MAX_MESSAGES",
        "ROUTERHUB_MAX_REQUEST_BYTES",
    )
    return [
        Error(f"{name}={getattr(settings, name)!r} must be a positive number.", id="routing.E022")
        for name in names
        if not isinstance(getattr(settings, name), (int, float)) or getattr(settings, name) <= 0
    ]


@register()
def rate_limits_parse(app_configs, **kwargs):
    from routing.throttling import parse_rate

    problems = []
    for name in (
        "ROUTERHUB_THROTTLE_API_KEY",
        "ROUTERHUB_THROTTLE_FAILED_AUTH",
    ):
        try:
            parse_rate(getattr(settings, name))
        except ValueError as exc:
            problems.append(Error(f"{name}: {exc}", hint='e.g. "6000/min", or empty for no limit.', id="routing.E023"))
    return problems


@register()
def gateway_settings_are_valid(app_configs, **kwargs):
    """Upstream and gateway limits are positive; encryption keys are Fernet keys (ids routing.E025–E026)."""
    names = (
        "ROUTERHUB_GATEWAY_MAX_ATTEMPTS",
        "ROUTERHUB_GATEWAY_MAX_BODY_BYTES",
        "ROUTERHUB_GATEWAY_THREADS",
        "ROUTERHUB_UPSTREAM_CONNECT_TIMEOUT_SECONDS",
        "ROUTERHUB_UPSTREAM_READ_TIMEOUT_SECONDS",
        "ROUTERHUB_UPSTREAM_DEADLINE_SECONDS",
        "ROUTERHUB_UPSTREAM_MAX_CONNECTIONS",
        "ROUTERHUB_GATEWAY_DEFAULT_MAX_TOKENS",
    )
    errors = [
        Error(f"{name}={getattr(settings, name)!r} must be a positive number.", id="routing.E025")
        for name in names
        if not isinstance(getattr(settings, name), (int, float)) or getattr(settings, name) <= 0
    ]
    from cryptography.fernet import Fernet

    for key in settings.ROUTERHUB_ENCRYPTION_KEYS:
        try:
            Fernet(key.encode())
        except ValueError:
            errors.append(
                Error(
                    "ROUTERHUB_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes).",
                    hint='Make one with: python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"',
                    id="routing.E026",
                )
            )
    return errors


@register()
def trusted_proxies_are_addresses(app_configs, **kwargs):
    problems = []
    for entry in settings.ROUTERHUB_TRUSTED_PROXIES:
        try:
            ipaddress.ip_network(entry.strip().strip("[]"), strict=False)
        except ValueError:
            problems.append(
                Error(
                    f"ROUTERHUB_TRUSTED_PROXIES holds {entry!r}, which is not an IP address or network.",
                    hint="e.g. 10.0.0.5 or 172.18.0.0/16 (host names are not resolved).",
                    id="routing.E030",
                )
            )
    return problems
