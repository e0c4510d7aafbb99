from django.core.management.base import BaseCommand, CommandError

from registry.migration_check import require_migrated
from registry.models import PromptSet
from registry.selectors import prompt_set_get
from routing.exceptions import JobBusy, NoActiveRoutingState, RoutingError
from routing.models import Job
from routing.profiling.client import ProviderError
from routing.services import jobs
from routing.services.validation_sets import (
    validation_set_estimate,
    validation_set_profile,
    validation_set_profiling_enqueue,
)


def add_profiling_arguments(parser) -> None:
    parser.add_argument(
        "--yes", action="store_true", help="start the job (without it, only its cost estimate is printed)"
    )
    parser.add_argument(
        "--max-cost-usd",
        type=float,
        help="stop the job cleanly when its answers and verdicts reach this (default: ROUTERHUB_PROFILING_MAX_COST_USD)",
    )
    parser.add_argument(
        "--activate",
        action="store_true",
        help="then fit a routing state like the active one, profiled on this set, and activate it",
    )
    parser.add_argument(
        "--queue", action="store_true", help="send the job to the worker instead of running it in this process"
    )


def profile_with_estimate(command: BaseCommand, prompt_set: PromptSet, *, yes, max_cost_usd, activate, queue) -> None:
    """Print the job's cost estimate; with ``yes``, run (or queue) it."""
    from django.conf import settings

    if max_cost_usd is None:
        max_cost_usd = settings.ROUTERHUB_PROFILING_MAX_COST_USD
    if max_cost_usd is not None and max_cost_usd < 0:
        raise CommandError("--max-cost-usd must not be negative")
    try:
        estimate = validation_set_estimate(prompt_set=prompt_set)
    except RoutingError as exc:
        raise CommandError(str(exc)) from None
    command.stdout.write(f"Cost estimate of profiling every active LLM with an API on {prompt_set.name}:")
    for line in estimate.lines():
        command.stdout.write(f"  {line}")
    cap = "no cost cap" if max_cost_usd is None else f"cost cap {max_cost_usd:g} USD"
    if not yes:
        command.stdout.write(
            f"Not started ({cap}). Start it with: python manage.py profile_validation_set {prompt_set.name} --yes"
            + (f" --max-cost-usd {max_cost_usd:g}" if max_cost_usd is not None else "")
            + (" --activate" if activate else "")
        )
        return
    arguments = {"prompt_set_id": prompt_set.id, "max_cost_usd": max_cost_usd, "activate": activate}
    if queue:
        try:
            job, created = validation_set_profiling_enqueue(
                prompt_set=prompt_set, max_cost_usd=max_cost_usd, activate=activate
            )
        except RoutingError as exc:
            raise CommandError(str(exc)) from None
        command.stdout.write(f"Job #{job.id} {'queued' if created else 'is already on its way'} ({cap}).")
        return

    def work(job):
        report, state = validation_set_profile(
            prompt_set=prompt_set,
            max_cost_usd=max_cost_usd,
            activate=activate,
            spent_since=job.created_at,
            progress=lambda done, total: jobs.job_progress(job=job, done=done, total=total),
            say=lambda message: command.stdout.write(message),
        )
        return report.as_dict(), state

    command.stdout.write(f"Starting ({cap}) ...")
    try:
        job = jobs.job_run_inline(kind=Job.Kind.PROFILE_VALIDATION_SET, arguments=arguments, work=work)
    except (RoutingError, NoActiveRoutingState, ProviderError, JobBusy, ValueError) as exc:
        raise CommandError(str(exc)) from None
    result = job.result
    ending = ("stopped by the cost cap" if result["stopped_by_cost_cap"] else f"done in {result['seconds']:.1f} s") + (
        f"; routing state v{result['state_version']} is active" if result["state_version"] else ""
    )
    command.stdout.write(
        command.style.SUCCESS(
            f"Job #{job.id}: {len(result['llms'])} LLMs profiled on {prompt_set.name}, {result['calls']:,} calls, "
            f"{result['cost_usd']:.4f} USD; {ending}"
        )
    )


class Command(BaseCommand):
    help = (
        "Profile every active LLM with an API on a validation set graded by a judge (one job: answers collected "
        "once per LLM, each graded by the judge, all within one cost cap). Prints the cost estimate; --yes starts it; "
        "--activate then fits and activates a routing state profiled on the set."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the validation set (build_validation_set --name)")
        add_profiling_arguments(parser)

    def handle(self, *args, name, yes, max_cost_usd, activate, queue, **options):
        require_migrated()
        try:
            prompt_set = prompt_set_get(name=name)
        except PromptSet.DoesNotExist as exc:
            raise CommandError(str(exc)) from None
        profile_with_estimate(self, prompt_set, yes=yes, max_cost_usd=max_cost_usd, activate=activate, queue=queue)
