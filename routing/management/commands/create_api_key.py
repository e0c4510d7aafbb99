from django.core.management.base import BaseCommand, CommandError

from registry.migration_check import require_migrated
from routing.models import Tenant
from routing.services.tenancy import tenant_with_key


class Command(BaseCommand):
    help = "Issue a new API key for a tenant (created if missing) and print it once; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True, help="tenant name")
        parser.add_argument(
            "--budget-usd", default=None, help="budget per period in USD (sets it; default for a new tenant: 10)"
        )
        parser.add_argument(
            "--period",
            choices=Tenant.Period.values,
            default=None,
            help="budget period (default for a new tenant: month)",
        )
        parser.add_argument("--name", default="", help="a label for the key")

    def handle(self, *args, tenant, budget_usd, period, name, **options):
        require_migrated()
        try:
            tenant_obj, created, issued = tenant_with_key(
                name=tenant, budget_usd=budget_usd, budget_period=period, key_name=name
            )
        except Exception as exc:  # validation errors of the tenant's fields
            raise CommandError(str(exc)) from exc
        self.stderr.write(
            f"{'Created' if created else 'Using'} tenant {tenant_obj.name!r}: {tenant_obj.budget_usd.normalize():f} USD per "
            f"{tenant_obj.budget_period}. The key below is shown once — store it now."
        )
        self.stdout.write(issued.secret)
