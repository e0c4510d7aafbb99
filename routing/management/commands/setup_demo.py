import io
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, OutputWrapper
from django.db import transaction

from routerhub.private_files import write_private
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
        "Make a freshly imported installation usable: an admin login, a fitted and active router "
        "(fitted only if none is active yet), and the demo tenant with an API key. Safe to run again: "
        "each run revokes the demo key the previous run issued and prints a new one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", default="mmlu-pro", help="prompt set to fit the router on")
        parser.add_argument("--strategy", default=None, help="strategy to fit (default: fit_router's default)")
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="where the service will listen (for the printed examples)",
        )
        parser.add_argument("--admin-user", default=os.environ.get("ROUTERHUB_ADMIN_USER", "admin"))
        parser.add_argument(
            "--demo-budget-usd", default="10", help="monthly budget of the 'demo' tenant when it is first created"
        )
        parser.add_argument(
            "--output",
            type=Path,
            default=None,
            help="also write everything printed (the admin password and the API key) to this file, mode 0600",
        )

    def handle(self, *args, dataset, strategy, base_url, admin_user, demo_budget_usd, output, **options):
        tee = None
        if output is not None:
            tee = _Tee(self.stdout._out)
            self.stdout = OutputWrapper(tee)
        password = self._ensure_admin(admin_user)
        if not RoutingState.objects.filter(is_active=True).exists():
            fit_args = ["--dataset", dataset] + (["--strategy", strategy] if strategy else [])
            call_command("fit_router", *fit_args, stdout=self.stdout)
        self.stdout.write("--- routerhub demo ---")
        self.stdout.write(f"Dashboard: {base_url}/   (log in with the admin login below)")
        self.stdout.write(f"Admin:    {base_url}/admin/   user {admin_user!r}, password {password!r}")
        self.stdout.write(f"API docs: {base_url}/api/docs/")
        self._demo_tenant(base_url, demo_budget_usd)
        if tee is not None:
            write_private(output, tee.copy.getvalue())

    def _demo_tenant(self, base_url: str, budget_usd: str) -> None:
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

    def _ensure_admin(self, username: str) -> str:
        """Create the superuser once. Its password comes from ROUTERHUB_ADMIN_PASSWORD, or is generated
        once and kept in .run/admin-password (mode 0600, git-ignored) so that every run prints the same login."""
        password_file = Path(settings.BASE_DIR) / ".run" / "admin-password"
        password = os.environ.get("ROUTERHUB_ADMIN_PASSWORD")
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
