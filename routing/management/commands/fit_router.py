import json

from django.core.management.base import BaseCommand, CommandError

from registry.migration_check import require_migrated
from registry.models import PromptSet
from registry.selectors import prompt_set_get
from routing.exceptions import JobBusy, RoutingError
from routing.models import Job
from routing.services import jobs
from routing.services.state import DEFAULT_STRATEGY, params_of, routing_state_fit
from routing.services.state_choice import AUTO, routing_state_fit_auto
from routing.strategies import STRATEGIES


class Command(BaseCommand):
    help = (
        "Fit a routing strategy on a data set's train split, profile every LLM on its validation split, "
        "store it as a new routing-state version and activate it (synchronously). Hyper-parameters not given "
        "are chosen by cross-validation over the training LLMs unless --no-tuning. --strategy auto fits every "
        "universal strategy that way and activates the one with the best cross-validated score."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="prompt set name, e.g. mmlu-pro")
        parser.add_argument(
            "--strategy", default=DEFAULT_STRATEGY, help=f"strategy name, or auto (default {DEFAULT_STRATEGY})"
        )
        parser.add_argument(
            "--k", type=int, help="clusters (K-means / LearnedMap) or neighbours (K-NN); default: the strategy's"
        )
        parser.add_argument(
            "--params", default="{}", help="hyper-parameters held fixed, as JSON, e.g. '{\"prior_strength\": 5}'"
        )
        parser.add_argument(
            "--no-tuning",
            action="store_true",
            help="use the strategy's defaults for every hyper-parameter not given, instead of tuning them",
        )
        parser.add_argument("--no-activate", action="store_true", help="store the new state without activating it")

    def handle(self, *args, dataset, strategy, k, params, no_activate, no_tuning, **options):
        require_migrated()
        try:
            prompt_set = prompt_set_get(name=dataset)
        except PromptSet.DoesNotExist as exc:
            raise CommandError(str(exc)) from None
        try:
            extra = json.loads(params)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--params is not valid JSON: {exc}") from None
        if strategy == AUTO:
            if k is not None or extra or no_tuning:
                raise CommandError(
                    "--k, --params and --no-tuning do not apply to auto: each strategy's hyper-parameters are tuned"
                )
            self._fit_auto(prompt_set, activate=not no_activate)
            return
        if k is not None:
            size_parameter = STRATEGIES[strategy].size_parameter if strategy in STRATEGIES else None
            if size_parameter is None:
                raise CommandError(f"--k does not apply to {strategy!r}: it has no clusters or neighbours to count")
            extra[size_parameter] = k

        def fit(job):
            jobs.job_progress(job=job, done=0, total=1)
            state = routing_state_fit(
                prompt_set=prompt_set,
                strategy=strategy,
                params=extra,
                activate=not no_activate,
                tune=not no_tuning,
                say=lambda message: self.stdout.write(message),
            )
            return {
                "state_version": state.version,
                "strategy": state.strategy,
                "prompt_set": prompt_set.name,
                "n_train_prompts": state.n_train_prompts,
                "n_validation_prompts": state.n_validation_prompts,
                "profiles": state.profiles.count(),
                "fit_seconds": round(state.fit_seconds, 3),
                "activated": not no_activate,
            }, state

        # Recorded as a refit Job (admin "Jobs", staff API), like a fit done by the worker.
        arguments = {"prompt_set_id": prompt_set.id, "strategy": strategy, "params": extra}
        try:
            job = jobs.job_run_inline(kind=Job.Kind.REFIT, arguments=arguments, work=fit)
        except (RoutingError, TypeError, ValueError, JobBusy) as exc:
            raise CommandError(str(exc)) from None
        state = job.state
        self.stdout.write(
            self.style.SUCCESS(
                f"Routing state v{state.version}: {state.strategy} on {prompt_set.name}, "
                f"{state.profiles.count()} LLM profiles, fitted in {state.fit_seconds:.1f} s (job #{job.id}); "
                f"hyper-parameters {params_of(state)}"
            )
        )

    def _fit_auto(self, prompt_set, *, activate: bool) -> None:
        outcome = {}

        def fit(job):
            jobs.job_progress(job=job, done=0, total=1)
            fitted, chosen = routing_state_fit_auto(
                prompt_set=prompt_set, activate=activate, say=lambda message: self.stdout.write(message)
            )
            outcome.update(fitted=fitted, chosen=chosen)
            return {
                "state_version": chosen.version,
                "strategy": chosen.strategy,
                "prompt_set": prompt_set.name,
                "scores": {choice.state.strategy: choice.score for choice in fitted},
                "activated": activate,
            }, chosen

        arguments = {"prompt_set_id": prompt_set.id, "strategy": AUTO, "params": {}}
        try:
            job = jobs.job_run_inline(kind=Job.Kind.REFIT, arguments=arguments, work=fit)
        except (RoutingError, TypeError, ValueError, JobBusy) as exc:
            raise CommandError(str(exc)) from None
        chosen = outcome["chosen"]
        self.stdout.write(f"{'strategy':<22}{'cv score':>10}  hyper-parameters")
        for choice in outcome["fitted"]:
            score = f"{choice.score:.4f}" if choice.score is not None else "—"
            mark = "  ← auto" if choice.state.id == chosen.id else ""
            self.stdout.write(f"{choice.state.strategy:<22}{score:>10}  {params_of(choice.state)}{mark}")
        self.stdout.write(
            self.style.SUCCESS(
                f"auto chose {chosen.strategy} (cross-validated score {chosen.state['tuning']['score']:.4f}): "
                f"routing state v{chosen.version} on {prompt_set.name}, "
                + ("activated" if activate else "stored, not active")
                + f" (job #{job.id})"
            )
        )
