import io
import secrets
import signal
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import transaction

from registry.private_files import write_private
from routing.models import RoutingState, Tenant

DEMO_TENANT = "demo"
DEMO_KEY_LABEL = "setup_demo"


class _Tee(io.TextIOBase):
    """Writes to the terminal and keeps a copy (for --output)."""

    def __init__(self, stream) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.copy.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


class Command(BaseCommand):
    help = (
        "Make a freshly imported installation usable: an admin login, every routing strategy fitted (tuned) on the "
        "demo data set — those not fitted yet — with the best universal one by cross-validation activated if none "
        "is active, and the demo tenant with an API key. Safe to run again: each run revokes the demo key the "
        "previous run issued and prints a new one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", default="mmlu-pro", help="prompt set to fit the router on")
        parser.add_argument("--strategies", default=None, help="comma-separated strategies to fit (default: all)")
        parser.add_argument(
            "--tuning-budget",
            choices=("demo", "quick", "full"),
            default="demo",
            help="demo (default; the first `make run` waits for these fits): tuning on fewer prompts with l2 held at "
            "its default, final fits on a sample of 2,500 train prompts; quick: the same tuning, final fits on all; "
            "full: what fit_router and the nightly refit do",
        )
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="where the service will listen (for the printed examples)",
        )
        parser.add_argument("--admin-user", default=settings.ROUTERHUB_ADMIN_USER)
        parser.add_argument(
            "--demo-budget-usd", default="10", help="monthly budget of the 'demo' tenant when it is first created"
        )
        parser.add_argument(
            "--upstream-url",
            default=None,
            help="an OpenAI-compatible API serving the data set's LLMs (make run: the demo upstream); "
            "set as their api_base, unless an LLM already has one of its own",
        )
        parser.add_argument(
            "--fit-only",
            action="store_true",
            help="only fit the strategies not fitted yet and, if any was, activate the best by cross-validation "
            "among every strategy fitted on the data set; no login, key or examples (make run runs this in the "
            "background once the service answers)",
        )
        parser.add_argument(
            "--output",
            type=Path,
            default=None,
            help="also write everything printed (the admin password and the API key) to this file, mode 0600",
        )

    def handle(
        self,
        *args,
        dataset,
        strategies,
        tuning_budget,
        base_url,
        admin_user,
        demo_budget_usd,
        upstream_url,
        output,
        fit_only,
        **options,
    ):
        if fit_only:
            # make run stops this background fit with SIGTERM: exit through Python, so that its Job is
            # recorded as failed rather than left running (which would refuse the next run's fits).
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
            chosen = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
            self._fit_strategies(dataset, chosen, tuning_budget, choose_among_all=True)
            return
        tee = None
        if output is not None:
            tee = _Tee(self.stdout._out)
            self.stdout = OutputWrapper(tee)
        password = self._ensure_admin(admin_user)
        self._fit_strategies(
            dataset, [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None, tuning_budget
        )
        if upstream_url:
            from routing.services.gateway import demo_llms_at

            # The URL is remembered, so that a later run on another port moves the same LLMs along.
            remembered = Path(settings.BASE_DIR) / ".run" / "demo-upstream-url"
            previous = remembered.read_text().strip() if remembered.exists() else None
            changed = demo_llms_at(dataset=dataset, api_base=upstream_url, previous=previous)
            remembered.parent.mkdir(parents=True, exist_ok=True)
            remembered.write_text(upstream_url + "\n")
            self.stdout.write(f"Demo upstream {upstream_url}: api_base of {changed} LLM(s) of {dataset} changed")
        self.stdout.write("--- routerhub demo ---")
        self.stdout.write(f"Dashboard: {base_url}/   (log in with the admin login below)")
        self.stdout.write(f"Admin:    {base_url}/admin/   user {admin_user!r}, password {password!r}")
        self.stdout.write(f"API docs: {base_url}/api/docs/")
        self._demo_tenant(base_url, demo_budget_usd, gateway=bool(upstream_url))
        if tee is not None:
            write_private(output, tee.copy.getvalue())

    def _fit_strategies(
        self, dataset: str, strategies: list[str] | None, tuning_budget: str, *, choose_among_all: bool = False
    ) -> None:
        from registry.models import PromptSet
        from registry.selectors import prompt_set_get
        from routing.exceptions import JobBusy, RoutingError
        from routing.models import Job
        from routing.services import jobs
        from routing.services.state import params_of
        from routing.services.state_choice import routing_states_fit_and_choose

        if not PromptSet.objects.filter(name=dataset).exists() and RoutingState.objects.filter(is_active=True).exists():
            return  # a router is active already and there is no demo data set to fit more strategies on
        outcome = {}

        def fit(job):
            jobs.job_progress(job=job, done=0, total=1)
            fitted, activated = routing_states_fit_and_choose(
                prompt_set=prompt_set,
                strategies=strategies,
                tuning_budget=tuning_budget,
                activate_best=choose_among_all or not RoutingState.objects.filter(is_active=True).exists(),
                compare_existing=choose_among_all,
                say=lambda message: self.stdout.write(message),
            )
            outcome.update(fitted=fitted, activated=activated)
            result = {
                "prompt_set": prompt_set.name,
                "fitted": [choice.state.strategy for choice in fitted],
                "activated": activated.strategy if activated is not None else None,
            }
            return result, activated or (fitted[-1].state if fitted else None)

        try:
            prompt_set = prompt_set_get(name=dataset)
            if _all_fitted(prompt_set, strategies):
                # No Job: a later make run starts even if an earlier background fit was killed mid-way.
                self.stdout.write(f"Every strategy asked for is fitted on {dataset} already")
                outcome.update(fitted=[], activated=None)
            else:
                # Recorded as a refit Job (admin "Jobs", staff API), like a fit done by the worker.
                jobs.job_run_inline(kind=Job.Kind.REFIT, arguments={"prompt_set_id": prompt_set.id}, work=fit)
        except (PromptSet.DoesNotExist, RoutingError, JobBusy) as exc:
            raise CommandError(str(exc)) from None
        fitted, activated = outcome["fitted"], outcome["activated"]
        if fitted:
            self.stdout.write(f"{'strategy':<22}{'cv score':>10}{'fit s':>8}  hyper-parameters")
            for choice in fitted:
                score = f"{choice.score:.4f}" if choice.score is not None else "—"
                mark = (
                    "  ← active"
                    if activated is not None and choice.state.id == activated.id
                    else ("  (not universal)" if not choice.universal else "")
                )
                self.stdout.write(
                    f"{choice.state.strategy:<22}{score:>10}{choice.state.fit_seconds:>8.1f}  {params_of(choice.state)}{mark}"
                )
            total = sum(choice.state.fit_seconds for choice in fitted)
            self.stdout.write(
                f"{len(fitted)} strategies fitted in {total:.1f} s with the {tuning_budget} tuning budget"
                + (
                    " (fewer prompts, l2 at its default; `fit_router --strategy NAME` tunes and fits on all)"
                    if tuning_budget != "full"
                    else ""
                )
            )
        active = RoutingState.objects.filter(is_active=True).first()
        if active is not None:
            self.stdout.write(f"Active router: v{active.version} {active.strategy}")

    def _demo_tenant(self, base_url: str, budget_usd: str, *, gateway: bool) -> None:
        """The 'demo' tenant (monthly budget) and one live key for it: the previous run's key is revoked."""
        from routing.services.tenancy import api_key_rotate, tenant_create

        with transaction.atomic():
            tenant = Tenant.objects.filter(name=DEMO_TENANT).first() or tenant_create(
                name=DEMO_TENANT, budget_usd=budget_usd
            )
            issued, revoked = api_key_rotate(tenant=tenant, name=DEMO_KEY_LABEL)
        note = f"; {revoked} earlier demo key(s) revoked" if revoked else ""
        self.stdout.write(
            f"Tenant:   demo, {tenant.budget_usd.normalize():f} USD per {tenant.budget_period}; "
            f"new API key (shown once{note}): {issued.secret}"
        )
        self.stdout.write("Try:")
        self.stdout.write(
            f"  curl -sS {base_url}/api/v1/route -H 'Authorization: Bearer {issued.secret}' "
            "-H 'Content-Type: application/json' "
            '-d \'{"prompt": "What is the derivative of x**3 + 2x with respect to x?"}\''
        )
        if gateway:
            from routing.services.gateway import demo_presets

            demo_presets(tenant=tenant)
            self._gateway_examples(base_url, issued.secret)
            self._shadowing(base_url, tenant)

    def _shadowing(self, base_url: str, tenant) -> None:
        from routing.services.shadow import demo_shadowing

        judge = demo_shadowing(tenant=tenant)
        tenant.refresh_from_db()
        if judge is not None and tenant.shadow_share > 0:
            self.stdout.write(
                f"Shadow evaluation: {tenant.shadow_share:.0%} of the demo tenant's gateway calls are also asked of the "
                f"LLM of best predicted quality and judged by {judge.name} (the demo upstream's demo judge, a stand-in "
                f"that reads the demo data's correctness), paid from the global shadow budget: {base_url}/shadow/"
            )

    def _gateway_examples(self, base_url: str, key: str) -> None:
        import json
        import shlex

        from registry.models import Prompt

        question = (
            Prompt.objects.filter(split=Prompt.Split.TEST, prompt_set__role="dataset")
            .order_by("id")
            .values_list("text", flat=True)
            .first()
            or "What is the derivative of x**3 + 2x with respect to x?"
        )
        body = {"model": "routerhub-auto", "stream": True, "messages": [{"role": "user", "content": question}]}
        self.stdout.write(
            "Gateway (OpenAI-compatible; models routerhub-auto, routerhub-auto:cheap|balanced|best, or an LLM's name):"
        )
        self.stdout.write(
            f"  curl -N {base_url}/v1/chat/completions -H 'Authorization: Bearer {key}' "
            f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))}"
        )
        self.stdout.write("Python (pip install openai):")
        for line in (
            "from openai import OpenAI",
            f'client = OpenAI(base_url="{base_url}/v1", api_key="{key}")',
            'messages = [{"role": "user", "content": "What is the derivative of x**3 + 2x with respect to x?"}]',
            'answer = client.chat.completions.create(model="routerhub-auto", messages=messages)',
            "print(answer.model, answer.choices[0].message.content)",
        ):
            self.stdout.write("  " + line)

    def _ensure_admin(self, username: str) -> str:
        """Create the superuser once. Its password comes from ROUTERHUB_ADMIN_PASSWORD, or is generated
        once and kept in .run/admin-password (mode 0600, git-ignored) so that every run prints the same login."""
        password_file = Path(settings.BASE_DIR) / ".run" / "admin-password"
        password = settings.ROUTERHUB_ADMIN_PASSWORD
        if not password and password_file.exists():
            password_file.chmod(0o600)  # a file left by an older version may be wider
            password = password_file.read_text().strip()
        if not password:
            password = secrets.token_urlsafe(12)
            try:
                write_private(password_file, password + "\n")
            except OSError as exc:
                self.stderr.write(
                    f"Could not keep the generated admin password in {password_file} ({exc}); note it now."
                )
        user, _ = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        if not user.check_password(password) or not user.is_superuser:
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
        return password


def _all_fitted(prompt_set, strategies: list[str] | None) -> bool:
    from routing.strategies import STRATEGIES

    wanted = strategies or list(STRATEGIES)
    fitted = set(RoutingState.objects.filter(prompt_set=prompt_set).values_list("strategy", flat=True))
    return all(name in fitted for name in wanted)
