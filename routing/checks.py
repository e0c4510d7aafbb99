"""Start-up checks of routing's settings: a typo fails loudly (ids routing.E020–E026, E030, W030)."""

import ipaddress
import os

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.utils.module_loading import import_string


@register()
def pacing_policy_is_importable(app_configs, **kwargs):
    from routing.services.budget_policies import BudgetPacing

    path = settings.ROUTERHUB_PACING_POLICY
    try:
        policy = import_string(path)
    except ImportError as exc:
        return [
            Error(
                f"ROUTERHUB_PACING_POLICY={path!r} cannot be imported: {exc}",
                hint="Default: routing.services.budget_policies.SmoothedRatePacing.",
                id="routing.E020",
            )
        ]
    if not (isinstance(policy, type) and issubclass(policy, BudgetPacing)):
        return [
            Error(
                f"ROUTERHUB_PACING_POLICY={path!r} is not a routing.services.budget_policies.BudgetPacing subclass.",
                id="routing.E021",
            )
        ]
    return []


@register()
def route_api_limits_are_positive(app_configs, **kwargs):
    names = (
        "ROUTERHUB_MAX_PROMPT_CHARS",
        "ROUTERHUB_EMBED_MAX_CHARS",
        "ROUTERHUB_PACING_SMOOTHING",
        "ROUTERHUB_FEEDBACK_MAX_COST_USD",
        "ROUTERHUB_PACING_REFERENCE_PROMPTS",
        "ROUTERHUB_RESERVATION_ATTEMPTS",
        "ROUTERHUB_EXPECTED_OUTPUT_TOKENS",
        "ROUTERHUB_MAX_MESSAGES",
        "ROUTERHUB_MAX_REQUEST_BYTES",
        "ROUTERHUB_MAX_JSON_DEPTH",
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
        "ROUTERHUB_THROTTLE_FAILED_LOGIN",
        "ROUTERHUB_THROTTLE_FAILED_LOGIN_USER",
    ):
        try:
            parse_rate(getattr(settings, name))
        except ValueError as exc:
            problems.append(Error(f"{name}: {exc}", hint='e.g. "6000/min", or empty for no limit.', id="routing.E023"))
    return problems


@register()
def pacing_margin_is_a_share(app_configs, **kwargs):
    margin = settings.ROUTERHUB_PACING_MARGIN
    if isinstance(margin, (int, float)) and 0 <= margin <= 1:
        return []
    return [Error(f"ROUTERHUB_PACING_MARGIN={margin!r} must be a share of the budget, from 0 to 1.", id="routing.E024")]


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
        "ROUTERHUB_UPSTREAM_BODY_CHARS",
        "ROUTERHUB_GATEWAY_TOKENS_PER_IMAGE",
        "ROUTERHUB_GATEWAY_TOKENS_PER_AUDIO",
        "ROUTERHUB_GATEWAY_TOKENS_PER_FILE",
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
    if os.environ.get("ROUTERHUB_NUM_PROXIES", "0").strip() not in ("", "0"):
        problems.append(
            Warning(
                "ROUTERHUB_NUM_PROXIES is set but not read: X-Forwarded-For is believed only from the "
                "addresses in ROUTERHUB_TRUSTED_PROXIES.",
                hint="Set ROUTERHUB_TRUSTED_PROXIES to the address(es) your proxy connects from.",
                id="routing.W030",
            )
        )
    return problems
