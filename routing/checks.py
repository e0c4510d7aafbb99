"""Start-up checks of routing's settings: a typo fails loudly (ids routing.E020–E023)."""

from django.conf import settings
from django.core.checks import Error, register
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
    from routing.apis.throttling import parse_rate

    problems = []
    for name in ("ROUTERHUB_THROTTLE_API_KEY", "ROUTERHUB_THROTTLE_FAILED_AUTH"):
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
