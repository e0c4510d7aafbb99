import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from routing.models import RoutingState, Tenant


class Command(BaseCommand):
    help = (
        "Make a freshly imported installation usable: an admin login, a fitted and active router "
        "(fitted only if none is active yet), and the demo tenant with an API key. Safe to run again."
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

    def handle(self, *args, dataset, strategy, base_url, admin_user, demo_budget_usd, **options):
        password = self._ensure_admin(admin_user)
        if not RoutingState.objects.filter(is_active=True).exists():
            fit_args = ["--dataset", dataset] + (["--strategy", strategy] if strategy else [])
            call_command("fit_router", *fit_args, stdout=self.stdout)
        self.stdout.write("--- routerhub demo ---")
        self.stdout.write(f"Dashboard: {base_url}/   (log in with the admin login below)")
        self.stdout.write(f"Admin:    {base_url}/admin/   user {admin_user!r}, password {password!r}")
        self.stdout.write(f"API docs: {base_url}/api/docs/")
        self._demo_tenant(base_url, demo_budget_usd)

    def _demo_tenant(self, base_url: str, budget_usd: str) -> None:
        """The 'demo' tenant (monthly budget), a fresh API key for it, and a request that works."""
        from routing.services.tenancy import tenant_with_key

        tenant, _, issued = tenant_with_key(
            name="demo",
            budget_usd=None if Tenant.objects.filter(name="demo").exists() else budget_usd,
            key_name="setup_demo",
        )
        self.stdout.write(
            f"Tenant:   demo, {tenant.budget_usd.normalize():f} USD per {tenant.budget_period}; new API key (shown once): {issued.secret}"
        )
        self.stdout.write("Try:")
        self.stdout.write(
            f"  curl -sS {base_url}/api/v1/route -H 'Authorization: Bearer {issued.secret}' "
            "-H 'Content-Type: application/json' "
            '-d \'{"prompt": "What is the derivative of x**3 + 2x with respect to x?"}\''
        )

    def _ensure_admin(self, username: str) -> str:
        """Create the superuser once; its password comes from ROUTERHUB_ADMIN_PASSWORD or is generated
        and kept in .run/admin-password (git-ignored) so that every run prints the same login."""
        password_file = Path(settings.BASE_DIR) / ".run" / "admin-password"
        password = os.environ.get("ROUTERHUB_ADMIN_PASSWORD")
        if not password and password_file.exists():
            password = password_file.read_text().strip()
        if not password:
            password = secrets.token_urlsafe(12)
        password_file.parent.mkdir(parents=True, exist_ok=True)
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        user, _ = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        if not user.check_password(password) or not user.is_superuser:
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
        return password
