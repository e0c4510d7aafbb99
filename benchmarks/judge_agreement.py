"""Agreement of the reference-guided judge path with the multiple-choice grader on MMLU-Pro, with the demo judge.

    .venv/bin/python benchmarks/judge_agreement.py --limit 1200 --out benchmarks/results/judges.md

The demo upstream (routerhub/demo_upstream.py) answers as each demo LLM did in the data set and, asked a
judge prompt, judges by the demo data's correctness: its agreement checks the plumbing (templates,
rendering, strict parsing, cache, costs), not a real judge's judgement. With a real judge, the same
measurement is ``python manage.py judge_agreement --prompt-set <set> --judge <llm> --limit N``.

It works in a database of its own (``routerhub_bench_judges`` by default, on the configured server): the
first run migrates it and imports data/mmlu-pro with the hashing embedder; later runs reuse them. Every
run starts the demo upstream in this process, points the data set's LLMs at it and empties the judge's
cached verdicts there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from io import StringIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import machine, publish  # noqa: E402
from profile_llm import setup_django  # noqa: E402

PROJECT_DIR = Path(__file__).resolve().parents[1]
ANSWERERS = "gemini-1.5-pro-002,gemini-1.5-flash-002,Meta-Llama-3_1-70B-Instruct,DeepSeek-Coder-V2,Mixtral-8x7B-v0.1"
JUDGE = "gemini-1.5-pro-002"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="routerhub_bench_judges")
    parser.add_argument("--limit", type=int, default=1200, help="validation prompts per answering LLM")
    parser.add_argument("--answerers", default=ANSWERERS)
    parser.add_argument("--judge", default=JUDGE)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # The demo upstream listens on the loopback, which LLM calls may reach only when allowed.
    os.environ.setdefault("ROUTERHUB_UPSTREAM_ALLOWED_HOSTS", "127.0.0.1")
    setup_django(args.database)

    from django.core.management import call_command

    from registry.importing import dataset_import
    from registry.models import LLM, PromptSet
    from routerhub.demo_upstream import FakeUpstream, demo_answers
    from routing.models import JudgeVerdict
    from routing.services.gateway import demo_llms_at

    call_command("migrate", verbosity=0)
    if not PromptSet.objects.filter(name="mmlu-pro").exists():
        dataset_import(directory=PROJECT_DIR / "data" / "mmlu-pro", name="mmlu-pro", say=lambda _: None)
    with FakeUpstream(answer=demo_answers(PROJECT_DIR / "data" / "mmlu-pro"), record=False) as upstream:
        previous = LLM.objects.filter(name=args.judge).values_list("api_base", flat=True).first()
        demo_llms_at(dataset="mmlu-pro", api_base=upstream.url, previous=previous or None)
        # The first run starts from an empty cache (this benchmark's own database).
        JudgeVerdict.objects.filter(judge__name=args.judge).delete()
        command = ["--prompt-set", "mmlu-pro", "--judge", args.judge, "--answerers", args.answerers]
        runs = []
        for _ in range(2):  # the second run: every judge verdict from the cache
            out = StringIO()
            started = time.monotonic()
            call_command(
                "judge_agreement", *command, "--limit", str(args.limit), "--json", stdout=out, stderr=StringIO()
            )
            runs.append((json.loads(out.getvalue()), time.monotonic() - started))
    (report, seconds), (again, seconds_again) = runs
    # The demo upstream answers a question with a note where the data holds no outcome of that LLM: the
    # demo judge cannot judge those. Counted here, to compare with the judge's refusals.
    from registry.models import Outcome, Prompt

    prompt_set = PromptSet.objects.get(name="mmlu-pro")
    validation = list(
        Prompt.objects.filter(prompt_set=prompt_set, split=Prompt.Split.VALIDATION)
        .exclude(answer="")
        .order_by("id")
        .values_list("id", flat=True)[: args.limit]
    )
    names = report["answerers"]
    without_outcome = (
        len(names) * len(validation) - Outcome.objects.filter(llm__name__in=names, prompt_id__in=validation).count()
    )
    no_verdict = ", ".join(f"{n} {label}" for label, n in sorted(report["no_verdict"].items())) or "none"
    confusion = ", ".join(f"{cell} {n}" for cell, n in sorted(report["confusion"].items()))
    text = f"""# Judge agreement (reference-guided judge vs the multiple-choice grader, MMLU-Pro)

Measured with

    .venv/bin/python benchmarks/judge_agreement.py --limit {args.limit} --out benchmarks/results/judges.md

which runs, against the demo upstream started in-process,

    python manage.py judge_agreement --prompt-set mmlu-pro --judge {args.judge} \\
        --answerers {args.answerers} --limit {args.limit} --json

(twice, from an empty verdict cache: the second run finds every verdict in the cache; on the first, two
LLMs that gave the very same answer text to a question share one verdict). Machine: {machine()}.

**What this measures.** The judge here is the demo upstream acting as a judge
(`routerhub/demo_upstream.py`, `demo_judge`): it does not read the answer's merit, it looks the answer up
in the demo data (an answer a demo LLM gave, right or wrong as the data says; otherwise the answer's
letter against the data's reference). Its agreement with the rule grader is a check of the plumbing —
the templates, rendering, strict parsing, the verdict cache and the cost accounting — not evidence that
an LLM judge agrees with the grader. To measure a real judge, register it and run the command above with
`--judge <its name>` on any prompt set with references (docs/judges.md).

| | first run | second run (cached) |
|---|---|---|
| answers graded by both ({len(names)} LLMs × {len(validation):,} validation prompts) | {report["pairs"]:,} | {again["pairs"]:,} |
| judge verdicts | {report["with_verdict"]:,} | {again["with_verdict"]:,} |
| no verdict | {no_verdict} | {", ".join(f"{n} {label}" for label, n in sorted(again["no_verdict"].items())) or "none"} |
| agreement with the multiple-choice grader | {report["agreement"]:.4f} ({report["agree"]:,}/{report["with_verdict"]:,}) | {again["agreement"]:.4f} |
| Cohen's κ | {report["kappa"]:.4f} | {again["kappa"]:.4f} |
| judge calls made (cache hits) | {report["judge_calls"]:,} ({report["judge_cached"]:,}) | {again["judge_calls"]:,} ({again["judge_cached"]:,}) |
| judge cost at the judge LLM's list price | ${report["judge_cost_usd"]:.4f} | ${again["judge_cost_usd"]:.4f} |
| answer cost at the answering LLMs' list prices | ${report["answer_cost_usd"]:.4f} | ${again["answer_cost_usd"]:.4f} |
| wall time | {seconds:.1f} s | {seconds_again:.1f} s |

Rule → judge on the first run: {confusion}.

No verdict: the data set has no outcome of the answering LLM on {without_outcome:,} of these (LLM, question)
pairs; the demo upstream answers those with a note naming no option, which the demo judge cannot judge
(`Verdict: CANNOT JUDGE`, recorded as `refused`, counted neither way) while the rule grader scores it 0.

Wall times are of a shared 2-core machine with other work running; the judge calls are answered by the
in-process demo upstream, so they measure routerhub's side only (rendering, parsing, the cache's rows).
The costs are what the calls would cost at the LLMs' list prices (models.csv); the demo upstream charges nothing.
Answers are asked again on every run (the command stores no outcomes); judge verdicts are cached by
(judge, mode, template, prompt, answer, reference).
"""
    if report["disagreements"]:
        text += "\nFirst disagreements:\n\n" + "\n".join(f"- {line}" for line in report["disagreements"]) + "\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()
