import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from evaluation.models import EvaluationRun
from evaluation.protocol import PROTOCOLS
from evaluation.reports import print_report
from evaluation.selectors import COST_MEASURES, dataset_arrays
from registry.embedders import get_embedder
from registry.models import PromptSet
from registry.selectors import prompt_set_get

DEFAULT_STRATEGIES = "zero,knn,uniroute_kmeans,uniroute_learnedmap,routellm_mf,relative_maps,auto,clairvoyant"
ONLINE_STRATEGY = "uniroute_kmeans"  # fit_router's default strategy
# The online protocol's own options (evaluation/online.py, OnlineSettings): option → settings field.
ONLINE_OPTIONS = {
    "events": "events",
    "checkpoint_every": "checkpoint_every",
    "reprofile_every": "reprofile_every",
    "new_llm_prompts": "new_llm_prompts",
    "new_llms": "new_llms",
    "online_specialists": "specialists",
    "exploration": "exploration",
    "half_life_events": "half_life",
    "feedback_cap": "feedback_cap",
}


class Command(BaseCommand):
    help = (
        "Benchmark routing strategies on an imported data set with the unseen-LLM protocol of METHODS.md: "
        "prompts split 60/10/30 (or by category: --protocol domain-shift), LLMs 2/3 train and 1/3 unseen test, "
        "routing only among the unseen LLMs; every strategy is tuned inside each split on its training LLMs. "
        "--protocol online replays each split's test prompts through one strategy, learning from the data set's "
        "correctness of the chosen LLM, against the same router without learning. "
        "Prints a table and stores an EvaluationRun; --json and --plot write the figures and curves."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True)
        parser.add_argument(
            "--strategies",
            default=None,
            help=f"comma-separated (default {DEFAULT_STRATEGIES}); oracle and random are always added; clairvoyant is the "
            "non-universal upper reference; auto is, per split, the universal strategy of the run that cross-validation "
            f"over the split's training LLMs picks. --protocol online replays one universal strategy (default {ONLINE_STRATEGY})",
        )
        parser.add_argument("--trials", type=int, default=20, help="random splits (default 20)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--cost", choices=COST_MEASURES, default="price")
        parser.add_argument(
            "--params",
            default="{}",
            help='per-strategy hyper-parameters held fixed, as JSON, e.g. \'{"knn": {"k": 20}}\'; the others are tuned',
        )
        parser.add_argument(
            "--no-tuning",
            action="store_true",
            help="use the strategies' default hyper-parameters (and --params) instead of tuning them in each split",
        )
        parser.add_argument(
            "--tuning-budget",
            choices=("full", "quick", "demo"),
            default="full",
            help="full (fit_router's default) or quick: fewer prompts, l2 held at its default (a third of the fits)",
        )
        parser.add_argument(
            "--variants",
            default="",
            help="post-fit variants scored as methods of their own on each split's tuned fit, no refit, "
            "';'-separated: e.g. 'relative_maps:profile_prior=nested;relative_maps:profile_prior=overall'",
        )
        parser.add_argument(
            "--protocol",
            choices=PROTOCOLS,
            default="unseen-llm",
            help="unseen-llm (random prompt split), domain-shift (train prompts from some categories, validation and test "
            "from the others) or online (the unseen-llm splits' test prompts replayed in order, learning from feedback)",
        )
        online = parser.add_argument_group("--protocol online (evaluation/online.py)")
        online.add_argument(
            "--events", type=int, help="events replayed per split (default 2000; fewer if the split has fewer)"
        )
        online.add_argument("--checkpoint-every", type=int, help="events per reported window (default 250)")
        online.add_argument(
            "--reprofile-every",
            type=int,
            help="feedback enters the profiles every this many events (default 50; must divide --checkpoint-every)",
        )
        online.add_argument(
            "--new-llm-prompts",
            type=int,
            help="validation prompts a new LLM or specialist is registered with (default 50)",
        )
        online.add_argument("--new-llms", type=int, help="test LLMs tried as the new LLM per split (default all)")
        online.add_argument(
            "--online-specialists", type=int, help="categories simulated as a specialist per split (default 3; 0: none)"
        )
        online.add_argument(
            "--exploration",
            type=float,
            help="share of the learning routers' events routed on a Thompson draw (routing/strategies/exploration.py; default 0)",
        )
        online.add_argument("--half-life-events", type=float, help="feedback's half-life in events (default: no decay)")
        online.add_argument(
            "--feedback-cap",
            type=float,
            help="the replay's total feedback weight per LLM, in prompts (default: no cap)",
        )
        parser.add_argument(
            "--categories",
            default="category",
            help="where prompts' categories come from: 'category' (default) or a metadata key; per-category gains and specialist recall need them",
        )
        parser.add_argument("--json", type=Path, help="write the figures as JSON here")
        parser.add_argument("--plot", type=Path, help="write the deferral curves of one split as a PNG here")

    def handle(
        self,
        *args,
        dataset,
        strategies,
        trials,
        seed,
        cost,
        params,
        json: Path | None,
        plot: Path | None,
        no_tuning: bool,
        tuning_budget: str,
        variants: str,
        protocol: str,
        categories: str,
        **options,
    ):
        from evaluation.clairvoyant import CLAIRVOYANT
        from evaluation.engine import AUTO, run_protocol
        from routing.strategies import STRATEGIES

        online = {field: options[option] for option, field in ONLINE_OPTIONS.items() if options.get(option) is not None}
        if protocol == "online":
            return self._online(
                dataset=dataset,
                strategies=strategies,
                trials=trials,
                seed=seed,
                cost=cost,
                params=params,
                json=json,
                no_tuning=no_tuning,
                tuning_budget=tuning_budget,
                variants=variants,
                categories=categories,
                online=online,
            )
        if online:
            given = ["--" + o.replace("_", "-") for o in ONLINE_OPTIONS if options.get(o) is not None]
            raise CommandError(
                f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} only to --protocol online"
            )
        strategies = strategies or DEFAULT_STRATEGIES
        names = [s.strip() for s in strategies.split(",") if s.strip()]
        unknown = [s for s in names if s not in STRATEGIES and s not in (CLAIRVOYANT, AUTO)]
        if unknown:
            raise CommandError(f"unknown strategies: {', '.join(unknown)}; known: {', '.join(sorted(STRATEGIES))}")
        if "zero" not in names:
            names.insert(0, "zero")  # every gain is measured against ZeroRouter on the same split
        if trials < 1:
            raise CommandError("--trials must be at least 1")
        try:
            strategy_params = _loads(params)
            variant_list = _variants(variants)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        prompt_set, arrays = self._load(dataset, cost, categories)
        if arrays.categories is None:
            if protocol == "domain-shift":
                raise CommandError(
                    f"the domain-shift protocol needs categories, and no prompt of {dataset!r} has a {categories!r}"
                )
            self.stdout.write(f"  no prompt has a {categories!r}: no per-category gains or specialist recall")
        if arrays.dropped:
            self.stdout.write(
                self.style.WARNING(
                    f"  dropped {len(arrays.dropped)} LLMs without a {cost} cost: {', '.join(arrays.dropped)}"
                )
            )
        self.stdout.write(
            f"  {arrays.correctness.shape[0]:,} prompts × {len(arrays.llm_names)} LLMs; cost = {arrays.cost_note}\n"
            f"Running {trials} {protocol} splits of {', '.join(names)} (seed {seed}, tuning {'off' if no_tuning else f'on, {tuning_budget} budget'}) ..."
        )
        started = time.monotonic()
        try:
            result = run_protocol(
                arrays.embeddings,
                arrays.correctness,
                arrays.costs,
                arrays.llm_names,
                strategies=names,
                trials=trials,
                seed=seed,
                strategy_params=strategy_params,
                tuning=not no_tuning,
                protocol=protocol,
                categories=arrays.categories,
                tuning_budget=tuning_budget,
                variants=variant_list,
                progress=lambda done, total: self.stdout.write(
                    f"  split {done}/{total} done, {time.monotonic() - started:.0f} s elapsed"
                ),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        seconds = time.monotonic() - started
        curves = result.pop("curves", None)
        result = {
            "dataset": dataset,
            "cost": cost,
            "cost_note": arrays.cost_note,
            "embedder": get_embedder().name,
            "categories": categories if arrays.categories is not None else None,
            **result,
        }
        EvaluationRun.objects.create(
            prompt_set=prompt_set,
            protocol=result.get("protocol", {}),
            strategies=names,
            trials=trials,
            seed=seed,
            cost=cost,
            embedder=result["embedder"],
            results={**result, "curves": curves},  # the dashboard draws the first split's curves
            seconds=seconds,
        )
        print_report(result, self.stdout.write)
        if json:
            json.parent.mkdir(parents=True, exist_ok=True)
            json.write_text(_dumps(result))
            self.stdout.write(f"Wrote {json}")
        if plot:
            from evaluation.plots import plot_deferral_curves

            plot.parent.mkdir(parents=True, exist_ok=True)
            plot_deferral_curves({**result, "curves": curves}, plot)
            self.stdout.write(f"Wrote {plot}")
        self.stdout.write(self.style.SUCCESS(f"Done in {seconds:.0f} s"))

    def _load(self, dataset: str, cost: str, categories: str):
        """(prompt set, its arrays) of ``dataset``; an unknown data set or unusable costs stop the command."""
        try:
            prompt_set = prompt_set_get(name=dataset)
            self.stdout.write(f"Loading {dataset} ...")
            return prompt_set, dataset_arrays(prompt_set=prompt_set, cost=cost, category_field=categories)
        except (PromptSet.DoesNotExist, ValueError) as exc:
            raise CommandError(str(exc)) from None

    def _online(
        self,
        *,
        dataset: str,
        strategies: str | None,
        trials: int,
        seed: int,
        cost: str,
        params: str,
        json: Path | None,
        no_tuning: bool,
        tuning_budget: str,
        variants: str,
        categories: str,
        online: dict,
    ):
        """``--protocol online``: ``online`` holds the OnlineSettings fields given as options (``ONLINE_OPTIONS``)."""
        from evaluation.online import OnlineSettings, run_online
        from evaluation.reports import print_online_report

        names = [s.strip() for s in (strategies or ONLINE_STRATEGY).split(",") if s.strip()]
        if len(names) != 1:
            raise CommandError(f"--protocol online replays one strategy, got {len(names)}: {', '.join(names)}")
        if variants:
            raise CommandError("--variants do not apply to --protocol online")
        if trials < 1:
            raise CommandError("--trials must be at least 1")
        try:
            settings = OnlineSettings(**online)
            settings.check()
        except ValueError as exc:
            raise CommandError(_option_names(str(exc))) from None
        try:
            strategy_params = _loads(params)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        prompt_set, arrays = self._load(dataset, cost, categories)
        if arrays.categories is None:
            self.stdout.write(f"  no prompt has a {categories!r}: no specialists")
        self.stdout.write(
            f"  {arrays.correctness.shape[0]:,} prompts × {len(arrays.llm_names)} LLMs; cost = {arrays.cost_note}\n"
            f"Replaying {trials} online splits of {names[0]} (seed {seed}, tuning "
            f"{'off' if no_tuning else f'on, {tuning_budget} budget'}) ..."
        )
        started = time.monotonic()
        try:
            result = run_online(
                arrays.embeddings,
                arrays.correctness,
                arrays.costs,
                arrays.llm_names,
                strategy=names[0],
                trials=trials,
                seed=seed,
                strategy_params=strategy_params.get(names[0], {}),
                tuning=not no_tuning,
                tuning_budget=tuning_budget,
                categories=arrays.categories,
                settings=settings,
                progress=lambda done, total: self.stdout.write(
                    f"  split {done}/{total} done, {time.monotonic() - started:.0f} s elapsed"
                ),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        seconds = time.monotonic() - started
        result = {
            "dataset": dataset,
            "cost": cost,
            "cost_note": arrays.cost_note,
            "embedder": get_embedder().name,
            **result,
        }
        EvaluationRun.objects.create(
            prompt_set=prompt_set,
            protocol=result["protocol"],
            strategies=names,
            trials=trials,
            seed=seed,
            cost=cost,
            embedder=result["embedder"],
            results=result,
            seconds=seconds,
        )
        print_online_report(result, self.stdout.write)
        if json:
            json.parent.mkdir(parents=True, exist_ok=True)
            json.write_text(_dumps(result))
            self.stdout.write(f"Wrote {json}")
        self.stdout.write(self.style.SUCCESS(f"Done in {seconds:.0f} s"))


def _option_names(message: str) -> str:
    """An ``OnlineSettings.check`` message with its field names as the command's options (``new_llms`` → ``--new-llms``)."""
    import re

    for option, field in ONLINE_OPTIONS.items():
        message = re.sub(rf"\b{field}\b", "--" + option.replace("_", "-"), message)
    return message


def _loads(text: str) -> dict:
    import json as json_module

    try:
        value = json_module.loads(text)
    except json_module.JSONDecodeError as exc:
        raise ValueError(f"--params is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("--params must be a JSON object mapping strategy name to its hyper-parameters")
    return value


def _dumps(value) -> str:
    import json as json_module

    import numpy as np

    def default(obj):
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        raise TypeError(f"cannot serialise {type(obj).__name__}")

    return json_module.dumps(value, indent=2, default=default)


def _variants(text: str) -> list[tuple[str, dict]]:
    """'strategy:key=value,key=value;…' → [(strategy, {key: value})]; values are JSON where they parse."""
    import json

    out = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        strategy, _, assignments = item.partition(":")
        values = {}
        for assignment in filter(None, assignments.split(",")):
            key, sep, raw = assignment.partition("=")
            if not sep:
                raise ValueError(f"variant {item!r}: expected key=value, got {assignment!r}")
            try:
                values[key.strip()] = json.loads(raw)
            except json.JSONDecodeError:
                values[key.strip()] = raw.strip()
        if not values:
            raise ValueError(f"variant {item!r} sets nothing")
        out.append((strategy.strip(), values))
    return out
