import json

from django.core.management.base import BaseCommand, CommandError

from registry.migration_check import require_migrated
from registry.models import LLM, Prompt, PromptSet
from registry.selectors import llm_by_name, prompt_set_get
from routing.profiling.client import ProviderError
from routing.services.judging import judge_agreement


class Command(BaseCommand):
    help = (
        "Measure how often an LLM judge (reference-guided) agrees with the prompt set's rule grader on the "
        "same answers: the check to run before trusting a judge on prompts without references (docs/judges.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--prompt-set", required=True, help="a prompt set with reference answers, e.g. mmlu-pro")
        parser.add_argument("--judge", required=True, help="the judge LLM's name (it needs an api_base)")
        parser.add_argument(
            "--answerers",
            default="",
            help="comma-separated LLMs whose answers are graded (default: every active LLM with an api_base)",
        )
        parser.add_argument("--limit", type=int, default=100, help="prompts per answering LLM (default 100)")
        parser.add_argument(
            "--split",
            default=Prompt.Split.VALIDATION,
            choices=[*Prompt.Split.values, "all"],
            help="which prompts (default: the validation split)",
        )
        parser.add_argument(
            "--concurrency", type=int, default=8, help="answer calls, and judge calls, in flight (default 8)"
        )
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, prompt_set, judge, answerers, limit, split, concurrency, json: bool, **options):
        require_migrated()
        if limit < 1 or concurrency < 1:
            raise CommandError("--limit and --concurrency must be positive")
        try:
            chosen_set = prompt_set_get(name=prompt_set)
        except PromptSet.DoesNotExist as exc:
            raise CommandError(str(exc)) from None
        judge_llm = llm_by_name(name=judge)
        if judge_llm is None:
            raise CommandError(f"--judge: no LLM named {judge!r}")
        if answerers.strip():
            chosen = []
            for name in filter(None, (n.strip() for n in answerers.split(","))):
                llm = llm_by_name(name=name)
                if llm is None:
                    raise CommandError(f"--answerers: no LLM named {name!r}")
                chosen.append(llm)
        else:
            chosen = list(LLM.objects.filter(is_active=True).exclude(api_base="").order_by("name"))
        if not chosen:
            raise CommandError("no answering LLM: name some with --answerers (each needs an api_base)")
        try:
            report = judge_agreement(
                prompt_set=chosen_set,
                judge_llm=judge_llm,
                answerers=chosen,
                limit=limit,
                split=None if split == "all" else split,
                concurrency=concurrency,
                say=self.stderr.write,
            )
        except (ValueError, ProviderError) as exc:
            raise CommandError(str(exc)) from None
        if json:
            self.stdout.write(_json(report.as_dict()))
            return
        self.stdout.write(_text(report))


def _json(data: dict) -> str:
    return json.dumps(data, indent=2)


def _text(report) -> str:
    agreement = "—" if report.agreement is None else f"{report.agreement:.3f}"
    kappa = "—" if report.kappa is None else f"{report.kappa:.3f}"
    no_verdict = ", ".join(f"{n} {label}" for label, n in sorted(report.no_verdict.items())) or "none"
    lines = [
        f"Judge {report.judge} (reference-guided) against the {report.rule_grader} grader on {report.prompt_set}:",
        f"  answers graded by both: {report.pairs} ({len(report.answerers)} LLM(s)); judge verdicts: "
        f"{report.with_verdict}; no verdict: {no_verdict}",
        f"  agreement {agreement} ({report.agree}/{report.with_verdict}), Cohen's kappa {kappa}",
        "  rule→judge: " + ", ".join(f"{cell} {n}" for cell, n in sorted(report.confusion.items())),
        f"  answers asked {report.answers_asked} (read from stored outcomes {report.answers_stored}, rejected "
        f"{report.answers_rejected}), answer cost ${report.answer_cost_usd:.4f}",
        f"  judge calls {report.judge_calls} (cached {report.judge_cached}), judge cost ${report.judge_cost_usd:.4f}",
        f"  {report.seconds:.1f} s",
    ]
    lines += [f"  disagreement: {line}" for line in report.disagreements]
    return "\n".join(lines)
