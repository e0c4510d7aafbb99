from datetime import datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from registry.migration_check import require_migrated
from registry.selectors import llm_by_name
from routing.exceptions import NoActiveRoutingState, RoutingError
from routing.management.commands.profile_validation_set import add_profiling_arguments, profile_with_estimate
from routing.models import Tenant
from routing.services.judging import judge_llm_of
from routing.services.validation_sets import validation_set_build


def moment(value: str) -> datetime:
    """An ISO date or date-time, or an age such as ``7d`` / ``12h`` (that long ago)."""
    value = value.strip()
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if value[-1:] in units and value[:-1].isdigit():
        return timezone.now() - timedelta(**{units[value[-1]]: int(value[:-1])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"--since {value!r}: give an ISO date (2026-11-01), a date-time, or an age (7d, 12h)"
        ) from None
    return parsed if parsed.tzinfo else timezone.make_aware(parsed)


class Command(BaseCommand):
    help = (
        "Build a validation set from a tenant's logged gateway prompts (tenants with log_gateway_text on): "
        "redact them (ROUTERHUB_VALIDATION_REDACTOR), drop near-duplicates (ROUTERHUB_VALIDATION_DUPLICATE_COSINE), "
        "sample --size prompts stratified over the active routing state's clusters, and store them as a prompt set "
        "graded by a judge LLM. With --profile, then profile every active LLM on it in one job (its cost estimate "
        "is printed first; --yes starts it) and, with --activate, fit and activate a routing state profiled on it."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--from-gateway-logs",
            action="store_true",
            required=True,
            help="build from the gateway's logged calls (the only source there is)",
        )
        parser.add_argument("--tenant", required=True, help="the tenant whose traffic is sampled (its name)")
        parser.add_argument("--size", type=int, required=True, help="prompts in the validation set")
        parser.add_argument("--name", required=True, help="the new prompt set's name")
        parser.add_argument(
            "--judge",
            help="the registered LLM that grades the answers on a rubric (default: ROUTERHUB_JUDGE_LLM)",
        )
        parser.add_argument("--since", type=moment, help="only calls logged since: 2026-11-01, an ISO date-time, or 7d")
        parser.add_argument("--seed", type=int, default=0, help="seed of the sampling (default 0)")
        parser.add_argument(
            "--profile",
            action="store_true",
            help="then profile every active LLM on it (as profile_validation_set: its estimate, --yes, --activate)",
        )
        add_profiling_arguments(parser)

    def handle(
        self, *args, tenant, size, name, judge, since, seed, profile, yes, max_cost_usd, activate, queue, **options
    ):
        require_migrated()
        found = Tenant.objects.filter(name=tenant).first()
        if found is None:
            raise CommandError(f"no tenant named {tenant!r}")
        if judge:
            judge_llm = llm_by_name(name=judge)
            if judge_llm is None:
                raise CommandError(f"--judge: no LLM named {judge!r}")
        else:
            try:
                judge_llm = judge_llm_of(None)
            except ValueError as exc:
                raise CommandError(f"--judge: name the judge LLM ({exc})") from None
        if (yes or activate or queue) and not profile:
            raise CommandError("--yes, --activate and --queue go with --profile")
        try:
            prompt_set, _ = validation_set_build(
                tenant=found,
                size=size,
                name=name,
                judge_llm=judge_llm,
                since=since,
                seed=seed,
                say=lambda message: self.stdout.write(message),
            )
        except (RoutingError, NoActiveRoutingState) as exc:
            raise CommandError(str(exc)) from None
        if profile:
            profile_with_estimate(self, prompt_set, yes=yes, max_cost_usd=max_cost_usd, activate=activate, queue=queue)
        else:
            self.stdout.write(f"Profile the LLMs on it with: python manage.py profile_validation_set {name}")
